//! Attribute macros for RunPod workers. Use them through the `worker-runtime` crate
//! (`#[worker::handler]`, `#[worker::init]`).

use proc_macro::TokenStream;

/// Placeholder until the macros land in the next commit.
#[proc_macro_attribute]
pub fn handler(_attr: TokenStream, item: TokenStream) -> TokenStream {
    item
}

/// Placeholder until the macros land in the next commit.
#[proc_macro_attribute]
pub fn init(_attr: TokenStream, item: TokenStream) -> TokenStream {
    item
}
