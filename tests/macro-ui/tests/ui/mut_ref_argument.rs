use layercache::cached;

#[cached]
fn fill(buf: &mut Vec<u8>) -> usize {
    buf.push(1);
    buf.len()
}

fn main() {}
