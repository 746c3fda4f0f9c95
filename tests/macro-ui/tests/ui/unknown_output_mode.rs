use layercache::cached;

type ApiResult<T> = Result<T, String>;

#[cached(output = "ok")]
fn load(id: u32) -> ApiResult<u32> {
    Ok(id)
}

fn main() {}
