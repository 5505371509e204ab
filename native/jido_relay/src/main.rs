fn main() {
    // Replaced by the relay implementation.
}
