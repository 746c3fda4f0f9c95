use layercache::cached;

#[cached]
fn log(line: &str) {
    println!("{line}");
}

fn main() {}
