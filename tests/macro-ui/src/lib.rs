//! trybuild UI tests of layercache's macros; the cases are under `tests/`.
//! Nothing here is public API.
