defmodule Jido.Distributed.Bench.ChaosSvg do
  @moduledoc """
  Draws a chaos run (`Jido.Distributed.Test.Chaos.run/1`'s result) as an SVG
  timeline, written by hand (no plotting library is reachable from Elixir
  here): signals delivered per second to each target host, signals accepted
  per second by all senders (dashed), and one shaded band per fault, from
  its start to its heal, coloured by kind and labelled where it is wide
  enough. The scale goes up to about three times the typical accepted rate;
  higher seconds (a backlog released at once) are drawn at the top with
  their value written above.
  """

  @width 1100
  @height 470
  @left 70
  @right 190
  @top 64
  @bottom 56

  @host_colors ["#1f77b4", "#2ca02c", "#17becf", "#8c564b", "#e377c2"]
  @band_colors %{
    full: "#d62728",
    partial: "#ff7f0e",
    one_way: "#9467bd",
    pause: "#7f7f7f"
  }

  @doc "The SVG document for `result`."
  @spec render(map()) :: String.t()
  def render(result) do
    series = result.throughput.per_target_host
    accepted = result.throughput.accepted_per_second
    seconds = max(Enum.max([length(accepted) | Enum.map(Map.values(series), &length/1)]), 1)
    y_max = y_scale(accepted, series)
    x = fn s -> @left + s * plot_w() / seconds end
    y = fn v -> @top + plot_h() - v * plot_h() / y_max end

    [
      ~s(<svg xmlns="http://www.w3.org/2000/svg" width="#{@width}" height="#{@height}" viewBox="0 0 #{@width} #{@height}" font-family="sans-serif" font-size="12">\n),
      ~s(<rect width="100%" height="100%" fill="white"/>\n),
      title(result),
      Enum.map(result.events, &band(&1, x)),
      axes(seconds, y_max, x, y),
      line(accepted, x, y, "#444", ~s( stroke-dasharray="5,4"), y_max),
      series
      |> Enum.sort()
      |> Enum.zip(Stream.cycle(@host_colors))
      |> Enum.map(fn {{_host, counts}, color} -> line(counts, x, y, color, "", y_max) end),
      legend(series),
      "</svg>\n"
    ]
    |> IO.iodata_to_binary()
  end

  defp plot_w, do: @width - @left - @right
  defp plot_h, do: @height - @top - @bottom

  defp title(result) do
    d = result.delivery
    s = result.settings

    line1 =
      "Chaos run, seed #{result.seed}: #{d.accepted} signals from #{s.senders} senders to #{s.targets} targets, net_ticktime #{s.net_ticktime} s"

    line2 =
      "delivered #{d.distinct} once each, lost #{d.lost}, duplicated #{d.duplicated}, order #{if d.order_held, do: "held", else: "VIOLATED (#{d.order_violations})"}"

    [
      text(@left, 22, line1, ~s(font-size="15" font-weight="bold")),
      text(@left, 42, line2, "")
    ]
  end

  defp band(event, x) do
    x0 = x.(event.started_ms / 1_000)
    x1 = max(x.(event.healed_ms / 1_000), x0 + 1)
    color = Map.fetch!(@band_colors, event.kind)

    label = label(event)

    [
      ~s(<rect x="#{f(x0)}" y="#{@top}" width="#{f(x1 - x0)}" height="#{plot_h()}" fill="#{color}" fill-opacity="0.18"/>\n),
      # Labelled only where the band is wide enough for it (about 6 px a character).
      if x1 - x0 >= String.length(label) * 6 do
        ~s(<text x="#{f((x0 + x1) / 2)}" y="#{@top - 6}" text-anchor="middle" font-size="10" fill="#{color}">#{escape(label)}</text>\n)
      else
        []
      end
    ]
  end

  defp label(%{kind: :pause, host: host}), do: "pause #{host}"
  defp label(%{kind: :one_way, cut: [a, b]}), do: "#{a}→#{b}"
  defp label(%{kind: :partial, groups: [[a], [b]]}), do: "#{a}|#{b}"
  defp label(%{kind: :full}), do: "split"
  defp label(%{kind: kind}), do: to_string(kind)

  defp axes(seconds, y_max, x, y) do
    x_step = nice_step(seconds / 10)
    y_step = nice_step(y_max / 5)

    [
      ~s(<line x1="#{@left}" y1="#{@top + plot_h()}" x2="#{@left + plot_w()}" y2="#{@top + plot_h()}" stroke="black"/>\n),
      ~s(<line x1="#{@left}" y1="#{@top}" x2="#{@left}" y2="#{@top + plot_h()}" stroke="black"/>\n),
      for s <- ticks(seconds, x_step) do
        [
          ~s(<line x1="#{f(x.(s))}" y1="#{@top + plot_h()}" x2="#{f(x.(s))}" y2="#{@top + plot_h() + 4}" stroke="black"/>\n),
          text(x.(s), @top + plot_h() + 17, "#{s}", ~s(text-anchor="middle"))
        ]
      end,
      for v <- ticks(y_max, y_step) do
        [
          ~s(<line x1="#{@left}" y1="#{f(y.(v))}" x2="#{@left + plot_w()}" y2="#{f(y.(v))}" stroke="#ddd"/>\n),
          text(@left - 6, y.(v) + 4, "#{v}", ~s(text-anchor="end"))
        ]
      end,
      text(
        @left + plot_w() / 2,
        @height - 14,
        "seconds since the run started",
        ~s(text-anchor="middle")
      ),
      ~s|<text transform="translate(18,#{@top + div(plot_h(), 2)}) rotate(-90)" text-anchor="middle">signals per second</text>\n|
    ]
  end

  defp line([], _x, _y, _color, _extra, _y_max), do: []

  # Values above the scale (bursts when a backlog is released) are drawn at
  # the top and labelled with their value.
  defp line(counts, x, y, color, extra, y_max) do
    points =
      counts
      |> Enum.with_index()
      |> Enum.map_join(" ", fn {v, s} -> "#{f(x.(s + 0.5))},#{f(y.(min(v, y_max)))}" end)

    clipped =
      for {v, s} <- Enum.with_index(counts), v > y_max do
        text(
          x.(s + 0.5),
          @top + 10,
          "#{v}",
          ~s(text-anchor="middle" font-size="9" fill="#{color}")
        )
      end

    [
      ~s(<polyline points="#{points}" fill="none" stroke="#{color}" stroke-width="1.6"#{extra}/>\n),
      clipped
    ]
  end

  # Up to three times the typical accepted rate, so that bursts do not flatten
  # everything else.
  defp y_scale(accepted, series) do
    all = accepted ++ Enum.concat(Map.values(series))

    typical =
      accepted
      |> Enum.filter(&(&1 > 0))
      |> Enum.sort()
      |> then(&Enum.at(&1, div(length(&1), 2), 1))

    nice_max(max(1, min(Enum.max([1 | all]), 3 * typical)))
  end

  defp legend(series) do
    lx = @left + plot_w() + 16

    hosts =
      series
      |> Map.keys()
      |> Enum.sort()
      |> Enum.zip(Stream.cycle(@host_colors))
      |> Enum.with_index()
      |> Enum.map(fn {{host, color}, i} ->
        legend_line(lx, @top + 10 + i * 18, color, "", "delivered to #{host}")
      end)

    n = map_size(series)

    sent =
      legend_line(lx, @top + 10 + n * 18, "#444", ~s( stroke-dasharray="5,4"), "accepted (all)")

    bands =
      [
        full: "full partition",
        partial: "partial (a|b)",
        one_way: "one-way cut",
        pause: "host paused"
      ]
      |> Enum.with_index()
      |> Enum.map(fn {{kind, name}, i} ->
        yy = @top + 30 + (n + 1 + i) * 18

        [
          ~s(<rect x="#{lx}" y="#{yy - 10}" width="22" height="12" fill="#{@band_colors[kind]}" fill-opacity="0.3"/>\n),
          text(lx + 28, yy, name, "")
        ]
      end)

    [hosts, sent, bands]
  end

  defp legend_line(lx, yy, color, extra, name) do
    [
      ~s(<line x1="#{lx}" y1="#{yy - 4}" x2="#{lx + 22}" y2="#{yy - 4}" stroke="#{color}" stroke-width="2"#{extra}/>\n),
      text(lx + 28, yy, name, "")
    ]
  end

  defp text(x, y, content, attrs),
    do: ~s(<text x="#{f(x)}" y="#{f(y)}" #{attrs}>#{escape(content)}</text>\n)

  defp ticks(max, step), do: Enum.take_while(Stream.iterate(0, &(&1 + step)), &(&1 <= max))

  # 1, 2 or 5 times a power of ten, at least `raw`.
  defp nice_step(raw) when raw <= 1, do: 1

  defp nice_step(raw) do
    magnitude = :math.pow(10, floor(:math.log10(raw)))
    step = Enum.find([1, 2, 5, 10], &(&1 * magnitude >= raw)) * magnitude
    round(step)
  end

  defp nice_max(v) do
    step = nice_step(v / 5)
    ceil(v / step) * step
  end

  defp f(number), do: :erlang.float_to_binary(number * 1.0, decimals: 1)

  defp escape(text) do
    text
    |> to_string()
    |> String.replace("&", "&amp;")
    |> String.replace("<", "&lt;")
    |> String.replace(">", "&gt;")
  end
end
