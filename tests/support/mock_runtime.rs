//! The process's runtime on a mock clock, for tests whose expiry decisions
//! must be exact: `init` with `Clock::mock()` and a 30 s default timeout,
//! once per test binary.

use std::sync::OnceLock;
use std::time::Duration;

use layercache::{Clock, Config, MockClock};

/// The mock clock every cache of this process reads.
pub fn clock() -> &'static MockClock {
    static MOCK: OnceLock<MockClock> = OnceLock::new();
    MOCK.get_or_init(|| {
        let (clock, mock) = Clock::mock();
        layercache::init(
            Config::builder()
                .clock(clock)
                .default_timeout(Duration::from_secs(30))
                .build(),
        )
        .unwrap();
        mock
    })
}
