//! Command-line and environment settings of the relay.
//!
//! Parsing is a pure function of the argument list and the few environment
//! values it reads, so it is tested without touching the process environment.

use erl_dist::node::NodeName;
use std::time::Duration;

/// Environment variable holding the cookie (preferred over `--cookie`, which
/// shows up in `ps`).
pub const COOKIE_ENV: &str = "JIDO_RELAY_COOKIE";

/// Environment variable that overrides the epmd port, as for BEAM nodes.
pub const EPMD_PORT_ENV: &str = "ERL_EPMD_PORT";

/// Default node name (the part before `@`).
pub const DEFAULT_NAME: &str = "jido_relay";

/// Default tick interval: well inside the default 60 s `net_ticktime`.
pub const DEFAULT_TICK_INTERVAL: Duration = Duration::from_millis(15_000);

/// Default cap on concurrent connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// Registered name of jido_distributed's Receiver on every node.
pub const RECEIVER_NAME: &str = "Elixir.Jido.Distributed.Transport.Receiver";

/// Default forward allowlist: the Receiver and the relay's own name (so
/// relays can chain).
pub fn default_allowlist() -> Vec<String> {
    vec![
        RECEIVER_NAME.to_owned(),
        crate::command::REGISTERED_NAME.to_owned(),
    ]
}

/// Default frames queued per peer node before drops.
pub const DEFAULT_QUEUE_CAPACITY: usize = 10_000;

/// Default interval between RTT probes.
pub const DEFAULT_RTT_INTERVAL: Duration = Duration::from_millis(1_000);

/// Default dial attempts per request.
pub const DEFAULT_DIAL_ATTEMPTS: u32 = 8;

/// Default longest delay between dial attempts.
pub const DEFAULT_DIAL_BACKOFF_MAX: Duration = Duration::from_millis(5_000);

/// Usage text, printed to stderr on `--help` or on a bad argument.
pub const USAGE: &str = "\
usage: jido_relay [--name NAME] [--host HOST] [--cookie COOKIE] [--port PORT]
                  [--tick-interval-ms N] [--max-connections N] [--allow NAME]...
                  [--queue-capacity N] [--rtt-interval-ms N] [--dial-attempts N]
                  [--dial-backoff-max-ms N] [--max-message-bytes N]
                  [--max-depth N] [--max-terms N]

  --name NAME            node name before '@' (default: jido_relay)
  --host HOST            host part of the node name (default: short hostname)
  --cookie COOKIE        distribution cookie (prefer the JIDO_RELAY_COOKIE
                         environment variable: arguments are visible in ps)
  --port PORT            distribution listen port (default: 0, ephemeral)
  --tick-interval-ms N   how often to send ticks on each connection (default: 15000)
  --max-connections N    concurrent connection cap (default: 1024)
  --allow NAME           registered name forwards may go to; repeat for more
                         (default: Elixir.Jido.Distributed.Transport.Receiver
                         and jido_relay)
  --queue-capacity N     frames queued per peer before new ones are dropped
                         (default: 10000)
  --rtt-interval-ms N    RTT probe interval per connection (default: 1000)
  --dial-attempts N      dial attempts per request (default: 8)
  --dial-backoff-max-ms N  longest pause between dial attempts (default: 5000)
  --max-message-bytes N  largest accepted message (default: 67108864)
  --max-depth N          deepest term nesting accepted (default: 256)
  --max-terms N          most terms in one message (default: 1000000)

The relay registers with epmd as a hidden node, prints `READY <node> <port>`
on stdout, and exits when stdin reaches end-of-file or on SIGTERM.
";

/// Settings of one relay instance.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// Full node name, `name@host`.
    pub node_name: NodeName,
    /// Distribution cookie.
    pub cookie: String,
    /// Listen port (0 = ephemeral).
    pub port: u16,
    /// Interval between ticks sent on each connection.
    pub tick_interval: Duration,
    /// Cap on concurrent connections (handshakes included).
    pub max_connections: usize,
    /// Port of the local epmd.
    pub epmd_port: u16,
    /// Registered names forwards may go to.
    pub allowlist: Vec<String>,
    /// Frames queued per peer before drops.
    pub queue_capacity: usize,
    /// Interval between RTT probes.
    pub rtt_interval: Duration,
    /// Dial attempts per request.
    pub dial_attempts: u32,
    /// Longest pause between dial attempts.
    pub dial_backoff_max: Duration,
    /// Bounds on incoming messages.
    pub limits: crate::connection::Limits,
}

// The cookie never goes to logs.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("node_name", &self.node_name.to_string())
            .field("cookie", &"<redacted>")
            .field("port", &self.port)
            .field("tick_interval", &self.tick_interval)
            .field("max_connections", &self.max_connections)
            .field("epmd_port", &self.epmd_port)
            .field("allowlist", &self.allowlist)
            .field("queue_capacity", &self.queue_capacity)
            .field("rtt_interval", &self.rtt_interval)
            .field("dial_attempts", &self.dial_attempts)
            .field("dial_backoff_max", &self.dial_backoff_max)
            .field("limits", &self.limits)
            .finish()
    }
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run the relay.
    Run(Config),
    /// Print usage and exit successfully.
    Help,
}

/// The environment values parsing depends on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    /// Value of `JIDO_RELAY_COOKIE`.
    pub cookie: Option<String>,
    /// Value of `ERL_EPMD_PORT`.
    pub epmd_port: Option<String>,
    /// The machine's short hostname, used when `--host` is absent.
    pub hostname: Option<String>,
}

impl Env {
    /// Reads the real process environment.
    pub fn from_process() -> Self {
        Self {
            cookie: std::env::var(COOKIE_ENV).ok(),
            epmd_port: std::env::var(EPMD_PORT_ENV).ok(),
            hostname: short_hostname(),
        }
    }
}

/// Bad command line or environment.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// An option this program does not know.
    #[error("unknown argument {0:?}")]
    UnknownArgument(String),
    /// An option given without its value.
    #[error("{0} needs a value")]
    MissingValue(&'static str),
    /// A value that does not parse or is out of range.
    #[error("{option} must be {expected}, got: {value:?}")]
    InvalidValue {
        /// The option (or environment variable).
        option: &'static str,
        /// What was expected.
        expected: &'static str,
        /// What was given.
        value: String,
    },
    /// Neither `--cookie` nor `JIDO_RELAY_COOKIE`.
    #[error("no cookie: set {COOKIE_ENV} (or pass --cookie)")]
    MissingCookie,
    /// No `--host` and no hostname could be determined.
    #[error("no host: pass --host (the hostname could not be read)")]
    MissingHost,
}

impl Command {
    /// Parses arguments (without the program name) against `env`.
    ///
    /// `--cookie` wins over `JIDO_RELAY_COOKIE` when both are set.
    pub fn parse<I>(args: I, env: &Env) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = String>,
    {
        let mut name = DEFAULT_NAME.to_owned();
        let mut host = None;
        let mut cookie = None;
        let mut port = 0u16;
        let mut tick_ms = DEFAULT_TICK_INTERVAL.as_millis() as u64;
        let mut max_connections = DEFAULT_MAX_CONNECTIONS;
        let mut allowlist: Option<Vec<String>> = None;
        let mut queue_capacity = DEFAULT_QUEUE_CAPACITY;
        let mut rtt_ms = DEFAULT_RTT_INTERVAL.as_millis() as u64;
        let mut dial_attempts = DEFAULT_DIAL_ATTEMPTS;
        let mut dial_backoff_max_ms = DEFAULT_DIAL_BACKOFF_MAX.as_millis() as u64;
        let mut limits = crate::connection::Limits::default();

        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            // Accept both `--opt value` and `--opt=value`.
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
                _ => (arg.clone(), None),
            };
            let mut value = |option: &'static str| -> Result<String, ConfigError> {
                match inline.clone() {
                    Some(v) => Ok(v),
                    None => args.next().ok_or(ConfigError::MissingValue(option)),
                }
            };
            match flag.as_str() {
                "-h" | "--help" => return Ok(Command::Help),
                "--name" => name = value("--name")?,
                "--host" => host = Some(value("--host")?),
                "--cookie" => cookie = Some(value("--cookie")?),
                "--port" => port = parse_num("--port", &value("--port")?, "a port number")?,
                "--tick-interval-ms" => {
                    tick_ms = parse_num(
                        "--tick-interval-ms",
                        &value("--tick-interval-ms")?,
                        "a positive integer",
                    )?;
                    if tick_ms == 0 {
                        return Err(invalid("--tick-interval-ms", "a positive integer", "0"));
                    }
                }
                "--max-connections" => {
                    max_connections = parse_num(
                        "--max-connections",
                        &value("--max-connections")?,
                        "a positive integer",
                    )?;
                    if max_connections == 0 {
                        return Err(invalid("--max-connections", "a positive integer", "0"));
                    }
                }
                "--allow" => {
                    let name = value("--allow")?;
                    if name.is_empty() || name.len() > 255 {
                        return Err(invalid("--allow", "an atom name of 1 to 255 bytes", &name));
                    }
                    allowlist.get_or_insert_with(Vec::new).push(name);
                }
                "--queue-capacity" => {
                    queue_capacity = positive("--queue-capacity", &value("--queue-capacity")?)?
                }
                "--rtt-interval-ms" => {
                    rtt_ms = positive("--rtt-interval-ms", &value("--rtt-interval-ms")?)?
                }
                "--dial-attempts" => {
                    dial_attempts = positive("--dial-attempts", &value("--dial-attempts")?)?
                }
                "--dial-backoff-max-ms" => {
                    dial_backoff_max_ms =
                        positive("--dial-backoff-max-ms", &value("--dial-backoff-max-ms")?)?
                }
                "--max-message-bytes" => {
                    limits.max_message_size =
                        positive("--max-message-bytes", &value("--max-message-bytes")?)?
                }
                "--max-depth" => {
                    limits.etf.max_depth = positive("--max-depth", &value("--max-depth")?)?
                }
                "--max-terms" => {
                    limits.etf.max_terms = positive("--max-terms", &value("--max-terms")?)?
                }
                _ => return Err(ConfigError::UnknownArgument(arg)),
            }
        }

        check_name(&name)?;
        let host = match host.or_else(|| env.hostname.clone()) {
            Some(h) => h,
            None => return Err(ConfigError::MissingHost),
        };
        if host.is_empty() || host.contains('@') || host.contains(char::is_whitespace) {
            return Err(invalid(
                "--host",
                "a host name without '@' or spaces",
                &host,
            ));
        }
        let node_name = NodeName::new(&name, &host)
            .map_err(|_| invalid("--name", "at most 255 bytes with the host", &name))?;

        let cookie = match cookie.or_else(|| env.cookie.clone()) {
            Some(c) if !c.is_empty() => c,
            _ => return Err(ConfigError::MissingCookie),
        };

        let epmd_port = match &env.epmd_port {
            Some(p) => parse_num(EPMD_PORT_ENV, p, "a port number")?,
            None => erl_dist::epmd::DEFAULT_EPMD_PORT,
        };

        Ok(Command::Run(Config {
            node_name,
            cookie,
            port,
            tick_interval: Duration::from_millis(tick_ms),
            max_connections,
            epmd_port,
            allowlist: allowlist.unwrap_or_else(default_allowlist),
            queue_capacity,
            rtt_interval: Duration::from_millis(rtt_ms),
            dial_attempts,
            dial_backoff_max: Duration::from_millis(dial_backoff_max_ms),
            limits,
        }))
    }
}

fn parse_num<T: std::str::FromStr>(
    option: &'static str,
    value: &str,
    expected: &'static str,
) -> Result<T, ConfigError> {
    value.parse().map_err(|_| invalid(option, expected, value))
}

// A number above zero.
fn positive<T>(option: &'static str, value: &str) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialEq + Default,
{
    let n: T = parse_num(option, value, "a positive integer")?;
    if n == T::default() {
        return Err(invalid(option, "a positive integer", value));
    }
    Ok(n)
}

fn invalid(option: &'static str, expected: &'static str, value: &str) -> ConfigError {
    ConfigError::InvalidValue {
        option,
        expected,
        value: value.to_owned(),
    }
}

// Same characters `erl -sname` accepts without quoting trouble.
fn check_name(name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(invalid("--name", "letters, digits, '_' or '-'", name))
    }
}

/// The machine's hostname up to the first dot, as `erl -sname` uses it.
pub fn short_hostname() -> Option<String> {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())?;
    let short = raw.trim().split('.').next().unwrap_or_default();
    (!short.is_empty()).then(|| short.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        Env {
            cookie: Some("envcookie".into()),
            epmd_port: None,
            hostname: Some("vm".into()),
        }
    }

    fn parse(args: &[&str], env: &Env) -> Result<Command, ConfigError> {
        Command::parse(args.iter().map(|s| s.to_string()), env)
    }

    fn run(args: &[&str], env: &Env) -> Config {
        match parse(args, env) {
            Ok(Command::Run(c)) => c,
            other => panic!("expected a config, got {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let c = run(&[], &env());
        assert_eq!(c.node_name.to_string(), "jido_relay@vm");
        assert_eq!(c.cookie, "envcookie");
        assert_eq!(c.port, 0);
        assert_eq!(c.tick_interval, Duration::from_secs(15));
        assert_eq!(c.max_connections, 1024);
        assert_eq!(c.epmd_port, 4369);
        assert_eq!(c.allowlist, default_allowlist());
        assert_eq!(c.queue_capacity, 10_000);
        assert_eq!(c.rtt_interval, Duration::from_secs(1));
        assert_eq!(c.dial_attempts, 8);
        assert_eq!(c.limits, crate::connection::Limits::default());
    }

    #[test]
    fn forwarding_limits() {
        let c = run(
            &[
                "--allow",
                "a",
                "--allow=b",
                "--queue-capacity",
                "5",
                "--rtt-interval-ms",
                "20",
                "--dial-attempts",
                "2",
                "--dial-backoff-max-ms",
                "300",
                "--max-message-bytes",
                "1000",
                "--max-depth",
                "8",
                "--max-terms",
                "99",
            ],
            &env(),
        );
        assert_eq!(c.allowlist, ["a", "b"]);
        assert_eq!(c.queue_capacity, 5);
        assert_eq!(c.rtt_interval, Duration::from_millis(20));
        assert_eq!(c.dial_attempts, 2);
        assert_eq!(c.dial_backoff_max, Duration::from_millis(300));
        assert_eq!(c.limits.max_message_size, 1000);
        assert_eq!(c.limits.etf.max_depth, 8);
        assert_eq!(c.limits.etf.max_terms, 99);
        for bad in [
            &["--queue-capacity", "0"][..],
            &["--rtt-interval-ms", "x"],
            &["--max-depth", "0"],
            &["--allow", ""],
        ] {
            assert!(
                matches!(parse(bad, &env()), Err(ConfigError::InvalidValue { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn all_options_both_syntaxes() {
        let c = run(
            &[
                "--name",
                "r1",
                "--host=example",
                "--cookie",
                "argcookie",
                "--port=4000",
                "--tick-interval-ms",
                "250",
                "--max-connections",
                "8",
            ],
            &Env {
                epmd_port: Some("4400".into()),
                ..env()
            },
        );
        assert_eq!(c.node_name.to_string(), "r1@example");
        assert_eq!(c.cookie, "argcookie", "--cookie wins over the env");
        assert_eq!(c.port, 4000);
        assert_eq!(c.tick_interval, Duration::from_millis(250));
        assert_eq!(c.max_connections, 8);
        assert_eq!(c.epmd_port, 4400);
    }

    #[test]
    fn help() {
        assert_eq!(parse(&["--help"], &env()), Ok(Command::Help));
        assert_eq!(parse(&["-h"], &Env::default()), Ok(Command::Help));
    }

    #[test]
    fn errors() {
        let e = env();
        assert_eq!(
            parse(&["--bogus"], &e),
            Err(ConfigError::UnknownArgument("--bogus".into()))
        );
        assert_eq!(
            parse(&["--name"], &e),
            Err(ConfigError::MissingValue("--name"))
        );
        assert!(matches!(
            parse(&["--port", "70000"], &e),
            Err(ConfigError::InvalidValue {
                option: "--port",
                ..
            })
        ));
        assert!(matches!(
            parse(&["--tick-interval-ms", "0"], &e),
            Err(ConfigError::InvalidValue { .. })
        ));
        assert!(matches!(
            parse(&["--tick-interval-ms", "-5"], &e),
            Err(ConfigError::InvalidValue { .. })
        ));
        assert!(matches!(
            parse(&["--name", "a@b"], &e),
            Err(ConfigError::InvalidValue {
                option: "--name",
                ..
            })
        ));
        assert!(matches!(
            parse(&["--host", "a@b"], &e),
            Err(ConfigError::InvalidValue {
                option: "--host",
                ..
            })
        ));
        let long = "x".repeat(300);
        assert!(matches!(
            parse(&["--name", &long], &e),
            Err(ConfigError::InvalidValue { .. })
        ));
        assert_eq!(
            parse(
                &[],
                &Env {
                    cookie: None,
                    ..env()
                }
            ),
            Err(ConfigError::MissingCookie)
        );
        assert_eq!(
            parse(
                &[],
                &Env {
                    cookie: Some(String::new()),
                    ..env()
                }
            ),
            Err(ConfigError::MissingCookie)
        );
        assert_eq!(
            parse(
                &[],
                &Env {
                    hostname: None,
                    ..env()
                }
            ),
            Err(ConfigError::MissingHost)
        );
        assert!(matches!(
            parse(
                &[],
                &Env {
                    epmd_port: Some("x".into()),
                    ..env()
                }
            ),
            Err(ConfigError::InvalidValue {
                option: EPMD_PORT_ENV,
                ..
            })
        ));
    }

    #[test]
    fn debug_redacts_cookie() {
        let c = run(&["--cookie", "sekrit"], &env());
        assert!(!format!("{c:?}").contains("sekrit"));
    }
}
