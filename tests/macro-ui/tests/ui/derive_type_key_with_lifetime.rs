use layercache::CacheKeyType;

#[derive(CacheKeyType)]
struct Name<'a>(&'a str);

fn main() {}
