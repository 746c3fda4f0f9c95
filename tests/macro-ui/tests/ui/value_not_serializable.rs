use layercache::cached;

#[derive(Clone)]
struct Connection;

#[cached]
fn connect(id: u32) -> Connection {
    let _ = id;
    Connection
}

fn main() {}
