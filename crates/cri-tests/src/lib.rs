//! Test-only crate: the CRI end-to-end tests are in `tests/` (see `README.md`). The library
//! is empty.
