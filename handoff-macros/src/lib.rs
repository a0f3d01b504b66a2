//! `#[handoff::interface]`: turns a trait into an RPC interface whose
//! parameters and results can be OS handles of a declared kind and access.
//!
//! Use it through the `handoff` crate, which re-exports it and documents the
//! syntax and guarantees in `handoff::rpc`. This crate only reads the trait
//! (`parse`) and writes the generated items (`generate`).

mod generate;
mod parse;

use proc_macro::TokenStream;
use quote::quote;
use syn::parse_macro_input;

use parse::{Errors, Interface, InterfaceArgs};

/// Makes a trait an RPC interface: generates `<Trait>Client`,
/// `<Trait>BlockingClient` and `<Trait>Server<S>` beside it, and rewrites the
/// trait's `async fn`s to return `impl Future + Send`. See `handoff::rpc`.
///
/// ```ignore
/// #[handoff::interface(name = "example.Files", version = 1)]
/// pub trait Files {
///     async fn append(&self, #[handle(file, write)] target: BorrowedHandle<'_>, text: String)
///         -> Result<u64, String>;
///     #[out(shared_memory, read)]
///     async fn snapshot(&self) -> Result<Handle, String>;
/// }
/// ```
#[proc_macro_attribute]
pub fn interface(attr: TokenStream, item: TokenStream) -> TokenStream {
    let args = parse_macro_input!(attr as InterfaceArgs);
    let item = parse_macro_input!(item as syn::ItemTrait);
    let mut errors = Errors::default();
    let iface = Interface::analyse(item, &mut errors);
    if let Err(e) = errors.into_result() {
        // The trait still appears (without our attributes), so the user
        // sees these errors and not a second wave about a missing trait.
        let error = e.to_compile_error();
        let item = &iface.item;
        return quote!(#error #item).into();
    }
    let version = match args.version.as_ref().map(|v| v.base10_parse::<u32>()) {
        Some(Ok(v)) => v,
        Some(Err(e)) => return e.to_compile_error().into(),
        None => 1,
    };
    let name = args.name.map(|n| n.value());
    generate::Generator::new(&iface, name, version).all().into()
}
