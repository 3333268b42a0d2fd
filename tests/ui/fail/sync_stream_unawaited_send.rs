// A plain `fn` handler cannot await: `stream.send(x);` would drop the item's future unsent, and
// an ignored `send_blocking` result would drop its error. Both are hard errors there, and the
// first says to write `send_blocking`.
#[worker::handler]
fn count(n: u32, stream: worker::StreamSender<u32>) {
    for i in 0..n {
        stream.send(i);
    }
    stream.send_blocking(n);
}
