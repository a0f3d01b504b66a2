//! What the attribute and the trait say, checked and reduced to a model the
//! generator reads. Every problem becomes a spanned `syn::Error`; they are
//! collected so one compile shows them all.

use proc_macro2::Span;
use quote::ToTokens;
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{
    Attribute, FnArg, GenericArgument, Ident, ItemTrait, LitInt, LitStr, Pat, PathArguments,
    ReturnType, Token, TraitItem, TraitItemFn, Type,
};

/// `#[interface(name = "...", version = N)]`, both optional.
pub struct InterfaceArgs {
    pub name: Option<LitStr>,
    pub version: Option<LitInt>,
}

impl Parse for InterfaceArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut args = InterfaceArgs {
            name: None,
            version: None,
        };
        while !input.is_empty() {
            let key: Ident = input.parse()?;
            input.parse::<Token![=]>()?;
            match key.to_string().as_str() {
                "name" if args.name.is_none() => args.name = Some(input.parse()?),
                "version" if args.version.is_none() => {
                    let v: LitInt = input.parse()?;
                    v.base10_parse::<u32>()?;
                    args.version = Some(v);
                }
                "name" | "version" => return Err(syn::Error::new(key.span(), format!("`{key}` is given twice"))),
                _ => {
                    return Err(syn::Error::new(
                        key.span(),
                        format!("unknown interface argument `{key}`: expected `name = \"...\"` or `version = N`"),
                    ))
                }
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(args)
    }
}

/// The kinds a declaration may name: the word, the stable name (the
/// signature hash's text), and the `handoff::KindName` variant the
/// generated code names (`None` for `any`). A variant that does not exist
/// is a compile error in the generated code, so this table cannot drift
/// from the library's enum unnoticed.
const KINDS: &[(&str, &str, Option<&str>)] = &[
    ("file", "file", Some("File")),
    ("directory", "directory", Some("Directory")),
    ("pipe", "pipe", Some("Pipe")),
    ("socket", "socket", Some("Socket")),
    ("shared_memory", "shared-memory", Some("SharedMemory")),
    ("event", "event", Some("Event")),
    ("process", "process", Some("Process")),
    ("timer", "timer", Some("Timer")),
    ("terminal", "terminal", Some("Terminal")),
    ("other", "other", Some("Other")),
    ("any", "any", None),
];

/// Declared access: `read`, `write`, `read_write`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum AccessDecl {
    Read,
    Write,
    ReadWrite,
}

/// `(kind[, access][, max = N])`, the inside of `#[handle]` and `#[out]`.
pub struct HandleDecl {
    pub span: Span,
    /// The kind's stable name, e.g. `"shared-memory"`.
    pub kind: String,
    /// The `handoff::KindName` variant, with the declaration's span;
    /// `None` for `any`.
    pub variant: Option<Ident>,
    pub access: Option<AccessDecl>,
    pub max: Option<u32>,
}

impl Parse for HandleDecl {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let span = input.span();
        let kind_ident: Ident = input.parse()?;
        let (kind, variant) = KINDS
            .iter()
            .find(|(word, _, _)| kind_ident == word)
            .map(|(_, name, variant)| {
                let variant = variant.map(|v| Ident::new(v, kind_ident.span()));
                ((*name).to_owned(), variant)
            })
            .ok_or_else(|| {
                let words: Vec<&str> = KINDS.iter().map(|(w, _, _)| *w).collect();
                syn::Error::new(
                    kind_ident.span(),
                    format!(
                        "unknown handle kind `{kind_ident}`: expected one of {}",
                        words.join(", ")
                    ),
                )
            })?;
        let mut decl = HandleDecl {
            span,
            kind,
            variant,
            access: None,
            max: None,
        };
        while input.parse::<Option<Token![,]>>()?.is_some() {
            if input.is_empty() {
                break;
            }
            let word: Ident = input.parse()?;
            if word == "max" {
                input.parse::<Token![=]>()?;
                let n: LitInt = input.parse()?;
                let max = n.base10_parse::<u32>()?;
                if max == 0 {
                    return Err(syn::Error::new(n.span(), "`max` must be at least 1"));
                }
                decl.max = Some(max);
                continue;
            }
            if decl.access.is_some() || decl.max.is_some() {
                return Err(syn::Error::new(
                    word.span(),
                    "expected `max = N`: the access comes right after the kind",
                ));
            }
            decl.access = Some(match word.to_string().as_str() {
                "read" => AccessDecl::Read,
                "write" => AccessDecl::Write,
                "read_write" => AccessDecl::ReadWrite,
                _ => {
                    return Err(syn::Error::new(
                        word.span(),
                        format!(
                            "unknown access `{word}`: expected `read`, `write` or `read_write`"
                        ),
                    ))
                }
            });
        }
        Ok(decl)
    }
}

/// How many handles a parameter or result holds.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    One,
    Optional,
    Many,
}

pub enum ParamKind {
    /// A serde value.
    Plain,
    /// `#[handle(...)]` on `BorrowedHandle<'_>`, `Option<…>` or `Vec<…>`.
    Handle(HandleDecl, Shape),
    /// `#[context] x: &S`: the state type `S`.
    Context(Type),
}

pub struct Param {
    pub name: Ident,
    pub ty: Type,
    pub kind: ParamKind,
}

pub enum OutputKind {
    /// A serde value.
    Plain,
    /// `#[out(...)]` on `Handle`, `Option<Handle>` or `Vec<Handle>`.
    Handles(HandleDecl, Shape),
    /// `Context<S>`: the state type `S`.
    Context(Type),
}

pub struct Method {
    pub name: Ident,
    /// Doc comments and other attributes, minus ours.
    pub attrs: Vec<Attribute>,
    pub params: Vec<Param>,
    /// `T` of `Result<T, E>`.
    pub ok: Type,
    /// `E` of `Result<T, E>`.
    pub err: Type,
    /// The whole return type as written.
    pub ret: Type,
    pub output: OutputKind,
}

/// The trait, checked.
pub struct Interface {
    pub item: ItemTrait,
    pub methods: Vec<Method>,
}

/// Collects errors instead of stopping at the first.
#[derive(Default)]
pub struct Errors {
    all: Option<syn::Error>,
    count: usize,
}

impl Errors {
    pub fn push(&mut self, e: syn::Error) {
        self.count += 1;
        match &mut self.all {
            Some(all) => all.combine(e),
            None => self.all = Some(e),
        }
    }

    pub fn into_result(self) -> syn::Result<()> {
        self.all.map_or(Ok(()), Err)
    }
}

/// The most parameters a method may have: its arguments travel as a tuple,
/// which serde encodes up to this length.
const MAX_PARAMS: usize = 16;

impl Interface {
    /// Checks the trait. `item` comes back with our attributes removed, so
    /// it can be emitted even when there are errors (sparing the user a
    /// second wave of errors about an item that vanished).
    pub fn analyse(mut item: ItemTrait, errors: &mut Errors) -> Interface {
        if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
            errors.push(syn::Error::new(
                item.generics.span(),
                "an interface trait cannot be generic: both sides must agree on every type",
            ));
        }
        let mut methods = Vec::new();
        for trait_item in &mut item.items {
            match trait_item {
                TraitItem::Fn(f) => {
                    if let Some(m) = Method::analyse(f, errors) {
                        methods.push(m);
                    }
                }
                other => errors.push(syn::Error::new(
                    other.span(),
                    "an interface trait holds only methods (`async fn name(&self, ...) -> Result<T, E>;`)",
                )),
            }
        }
        Interface { item, methods }
    }
}

/// Removes the attributes named `name` from `attrs`, returning them.
fn take_attrs(attrs: &mut Vec<Attribute>, name: &str) -> Vec<Attribute> {
    let (ours, rest) = std::mem::take(attrs)
        .into_iter()
        .partition(|a| a.path().is_ident(name));
    *attrs = rest;
    ours
}

/// At most one attribute named `name`, its arguments parsed as `T`.
fn single<T: Parse>(attrs: Vec<Attribute>, name: &str, errors: &mut Errors) -> Option<T> {
    let mut found = None;
    for (i, attr) in attrs.into_iter().enumerate() {
        if i > 0 {
            errors.push(syn::Error::new(
                attr.span(),
                format!("`#[{name}]` is given twice"),
            ));
            continue;
        }
        match attr.parse_args::<T>() {
            Ok(v) => found = Some(v),
            Err(e) => errors.push(e),
        }
    }
    found
}

/// The last path segment's name and its generic type arguments, for
/// recognising `Result<T, E>`, `Option<T>`, `Vec<T>`, `BorrowedHandle<'_>`,
/// `Handle`, `Context<S>` however they are imported.
fn segment(ty: &Type) -> Option<(String, Vec<&Type>)> {
    let Type::Path(p) = ty else { return None };
    if p.qself.is_some() {
        return None;
    }
    let last = p.path.segments.last()?;
    let args = match &last.arguments {
        PathArguments::AngleBracketed(a) => a
            .args
            .iter()
            .filter_map(|arg| match arg {
                GenericArgument::Type(t) => Some(t),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Some((last.ident.to_string(), args))
}

/// `X`, `Option<X>` or `Vec<X>` where `X` is named `inner`.
fn handle_shape(ty: &Type, inner: &str) -> Option<Shape> {
    let (name, args) = segment(ty)?;
    if name == inner {
        return Some(Shape::One);
    }
    let [arg] = args.as_slice() else { return None };
    let (arg_name, _) = segment(arg)?;
    match (name.as_str(), arg_name == inner) {
        ("Option", true) => Some(Shape::Optional),
        ("Vec", true) => Some(Shape::Many),
        _ => None,
    }
}

fn check_max(decl: &HandleDecl, shape: Shape, errors: &mut Errors) {
    match (shape, decl.max) {
        (Shape::Many, None) => errors.push(syn::Error::new(
            decl.span,
            "an array of handles needs a declared maximum: add `max = N` (like MIDL's `size_is`)",
        )),
        (Shape::One | Shape::Optional, Some(_)) => errors.push(syn::Error::new(
            decl.span,
            "`max = N` applies only to `Vec` of handles",
        )),
        _ => {}
    }
}

impl Method {
    fn analyse(f: &mut TraitItemFn, errors: &mut Errors) -> Option<Method> {
        let errors_before = errors.count;
        let sig = &mut f.sig;
        if sig.asyncness.is_none() {
            errors.push(syn::Error::new(
                sig.fn_token.span,
                "interface methods are `async fn`: write `async fn` (the server implements them with `async fn` too)",
            ));
        }
        if let Some(body) = &f.default {
            errors.push(syn::Error::new(
                body.span(),
                "interface methods have no default body",
            ));
        }
        if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
            errors.push(syn::Error::new(
                sig.generics.span(),
                "interface methods cannot be generic: both sides must agree on every type",
            ));
        }
        if let Some(v) = &sig.variadic {
            errors.push(syn::Error::new(
                v.span(),
                "interface methods cannot be variadic",
            ));
        }
        let mut inputs = sig.inputs.iter_mut();
        match inputs.next() {
            Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none() && r.colon_token.is_none() => {}
            Some(FnArg::Receiver(r)) => errors.push(syn::Error::new(
                r.span(),
                "interface methods take `&self`: calls run concurrently, so keep mutable state behind a lock",
            )),
            _ => errors.push(syn::Error::new(
                sig.ident.span(),
                "interface methods take `&self` first",
            )),
        }
        let mut params = Vec::new();
        for input in inputs {
            let FnArg::Typed(pt) = input else { continue };
            let handle_attrs = take_attrs(&mut pt.attrs, "handle");
            let context_attrs = take_attrs(&mut pt.attrs, "context");
            let name = match &*pt.pat {
                Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => p.ident.clone(),
                other => {
                    errors.push(syn::Error::new(
                        other.span(),
                        "interface parameters are plain names",
                    ));
                    continue;
                }
            };
            let ty = (*pt.ty).clone();
            if !handle_attrs.is_empty() && !context_attrs.is_empty() {
                errors.push(syn::Error::new(
                    name.span(),
                    "a parameter is either `#[handle(...)]` or `#[context]`, not both",
                ));
                continue;
            }
            let kind = if !handle_attrs.is_empty() {
                let Some(decl) = single::<HandleDecl>(handle_attrs, "handle", errors) else {
                    continue;
                };
                let Some(shape) = handle_shape(&ty, "BorrowedHandle") else {
                    errors.push(syn::Error::new(
                        ty.span(),
                        "a `#[handle(...)]` parameter is `BorrowedHandle<'_>`, `Option<BorrowedHandle<'_>>` or `Vec<BorrowedHandle<'_>>`",
                    ));
                    continue;
                };
                check_max(&decl, shape, errors);
                ParamKind::Handle(decl, shape)
            } else if let Some(attr) = context_attrs.first() {
                if !matches!(attr.meta, syn::Meta::Path(_)) {
                    errors.push(syn::Error::new(
                        attr.span(),
                        "`#[context]` takes no arguments",
                    ));
                }
                match &ty {
                    Type::Reference(r) if r.mutability.is_none() => {
                        ParamKind::Context((*r.elem).clone())
                    }
                    _ => {
                        errors.push(syn::Error::new(
                            ty.span(),
                            "a `#[context]` parameter is `&State`, the state of a `Context<State>` an earlier call returned",
                        ));
                        continue;
                    }
                }
            } else {
                if handle_shape(&ty, "BorrowedHandle").is_some()
                    || handle_shape(&ty, "Handle").is_some()
                {
                    errors.push(syn::Error::new(
                        ty.span(),
                        "a handle parameter needs a declaration: `#[handle(kind, access)]`, e.g. `#[handle(file, read)]`",
                    ));
                    continue;
                }
                if let Type::Reference(_) = ty {
                    errors.push(syn::Error::new(
                        ty.span(),
                        "parameters travel by value (serde); a reference is only for `#[context]` state",
                    ));
                    continue;
                }
                if matches!(ty, Type::ImplTrait(_)) {
                    errors.push(syn::Error::new(
                        ty.span(),
                        "parameters have concrete serde types",
                    ));
                    continue;
                }
                ParamKind::Plain
            };
            params.push(Param { name, ty, kind });
        }
        if params.len() > MAX_PARAMS {
            errors.push(syn::Error::new(
                sig.inputs.span(),
                format!("at most {MAX_PARAMS} parameters: group the rest in a struct"),
            ));
        }

        let out_attrs = take_attrs(&mut f.attrs, "out");
        let out_decl = if out_attrs.is_empty() {
            None
        } else {
            single::<HandleDecl>(out_attrs, "out", errors)
        };
        let sig = &f.sig;
        let ret = match &sig.output {
            ReturnType::Type(_, ty) => (**ty).clone(),
            ReturnType::Default => {
                errors.push(syn::Error::new(
                    sig.ident.span(),
                    "interface methods return `Result<T, E>`, with `E` the application's error type",
                ));
                return None;
            }
        };
        let (ok_ty, err_ty) = match segment(&ret) {
            Some((name, args)) if name == "Result" && args.len() == 2 => {
                (args[0].clone(), args[1].clone())
            }
            _ => {
                errors.push(syn::Error::new(
                    ret.span(),
                    "interface methods return `Result<T, E>`, with `E` the application's error type",
                ));
                return None;
            }
        };
        let output = match (out_decl, handle_shape(&ok_ty, "Handle")) {
            (Some(decl), Some(shape)) => {
                check_max(&decl, shape, errors);
                OutputKind::Handles(decl, shape)
            }
            (Some(decl), None) => {
                errors.push(syn::Error::new(
                    decl.span,
                    "`#[out(...)]` declares returned handles: the method returns `Result<Handle, E>`, `Result<Option<Handle>, E>` or `Result<Vec<Handle>, E>`",
                ));
                return None;
            }
            (None, Some(_)) => {
                errors.push(syn::Error::new(
                    ok_ty.span(),
                    "a returned handle needs a declaration on the method: `#[out(kind, access)]`, e.g. `#[out(shared_memory, read)]`",
                ));
                return None;
            }
            (None, None) => match segment(&ok_ty) {
                Some((name, args)) if name == "Context" && args.len() == 1 => {
                    OutputKind::Context(args[0].clone())
                }
                _ => OutputKind::Plain,
            },
        };
        if errors.count != errors_before {
            return None;
        }
        Some(Method {
            name: f.sig.ident.clone(),
            attrs: f.attrs.clone(),
            params,
            ok: ok_ty,
            err: err_ty,
            ret,
            output,
        })
    }
}

/// A type as written, every whitespace character removed: the form the
/// interface hash's canonical text uses (docs/wire-format.md).
pub fn type_text(ty: &Type) -> String {
    ty.to_token_stream()
        .to_string()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect()
}
