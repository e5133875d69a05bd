//! Kernel test suite helpers.
