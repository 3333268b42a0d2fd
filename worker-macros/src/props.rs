//! Property test: the macros' parse → validate → expand, on token streams mutated from valid
//! handlers and inits, never panics, and always gives either an expansion that parses as Rust
//! items or the user's item with `compile_error!`s. [`cases`] cases each: 2,000 by default,
//! `PROPTEST_CASES` for more (`PROPTEST_CASES=1000000 cargo test -p worker-runtime-macros props`).

use proc_macro2::{Delimiter, Group, Ident, Literal, Punct, Spacing, Span, TokenStream, TokenTree};
use proptest::prelude::*;
use quote::quote;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2_000)
}

/// Valid attribute arguments and items, one per shape the macros accept.
fn handlers() -> Vec<(TokenStream, TokenStream)> {
    vec![
        (
            quote!(),
            quote!(
                fn echo(input: String) -> String {
                    input
                }
            ),
        ),
        (
            quote!(concurrency = 4, main = false),
            quote!(
                async fn generate(
                    input: Prompt,
                    model: &Model,
                    job: &worker::Job,
                ) -> anyhow::Result<Output> {
                    model.run(input)
                }
            ),
        ),
        (
            quote!(return_aggregate_stream = true),
            quote!(
                async fn stream(
                    input: Prompt,
                    stream: worker::StreamSender<String>,
                ) -> Result<(), worker::StreamError> {
                    stream.send(input.text).await
                }
            ),
        ),
        (
            quote!(batch = 32, batch_wait = "5ms", concurrency = cores),
            quote!(
                fn embed(
                    inputs: Vec<Request>,
                    model: &Model,
                    jobs: &[worker::Job],
                ) -> Vec<anyhow::Result<Vector>> {
                    model.embed(inputs)
                }
            ),
        ),
        (
            quote!(
                refresh_worker = true,
                flavor = "current_thread",
                crate = "my_worker"
            ),
            quote!(
                pub(crate) fn r#match(
                    input: worker::Value,
                ) -> Result<worker::Value, worker::Failure> {
                    Ok(input)
                }
            ),
        ),
    ]
}

fn inits() -> Vec<(TokenStream, TokenStream)> {
    vec![
        (
            quote!(),
            quote!(
                fn load() -> Model {
                    Model::default()
                }
            ),
        ),
        (
            quote!(timeout = "10m"),
            quote!(
                async fn load() -> anyhow::Result<Model> {
                    Model::load("w.safetensors").await
                }
            ),
        ),
    ]
}

/// What a mutation puts in: the tokens the macros look for, and some they do not expect.
fn pool(i: usize) -> TokenTree {
    let span = Span::call_site();
    match i % 16 {
        0 => Ident::new("async", span).into(),
        1 => Ident::new("fn", span).into(),
        2 => Ident::new("Vec", span).into(),
        3 => Ident::new("batch", span).into(),
        4 => Ident::new("main", span).into(),
        5 => Punct::new('&', Spacing::Alone).into(),
        6 => Punct::new('=', Spacing::Alone).into(),
        7 => Punct::new(',', Spacing::Alone).into(),
        8 => Punct::new('<', Spacing::Alone).into(),
        9 => Literal::u64_unsuffixed(0).into(),
        10 => Literal::string("5ms").into(),
        11 => Literal::string("test_input.json").into(),
        12 => Group::new(Delimiter::Parenthesis, TokenStream::new()).into(),
        13 => Group::new(Delimiter::Brace, quote!(x)).into(),
        14 => Ident::new("StreamSender", span).into(),
        _ => Literal::u64_suffixed(u64::MAX).into(),
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Delete(usize),
    Duplicate(usize),
    Swap(usize, usize),
    Replace(usize, usize),
    Insert(usize, usize),
}

impl Mutation {
    fn at(&self) -> usize {
        match self {
            Mutation::Delete(i)
            | Mutation::Duplicate(i)
            | Mutation::Swap(i, _)
            | Mutation::Replace(i, _)
            | Mutation::Insert(i, _) => *i,
        }
    }
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = 0usize..200;
    prop_oneof![
        at.clone().prop_map(Mutation::Delete),
        at.clone().prop_map(Mutation::Duplicate),
        (at.clone(), 0usize..8).prop_map(|(i, j)| Mutation::Swap(i, j)),
        (at.clone(), 0usize..16).prop_map(|(i, p)| Mutation::Replace(i, p)),
        (at, 0usize..16).prop_map(|(i, p)| Mutation::Insert(i, p)),
    ]
}

/// Apply `m` at the `m.at() % count`-th token of `stream` in depth-first order (inside groups
/// too).
fn apply(stream: TokenStream, m: &Mutation) -> TokenStream {
    let total = count(&stream).max(1);
    let mut target = m.at() % total;
    walk(stream, &mut target, m)
}

fn count(stream: &TokenStream) -> usize {
    stream
        .clone()
        .into_iter()
        .map(|t| match &t {
            TokenTree::Group(g) => 1 + count(&g.stream()),
            _ => 1,
        })
        .sum()
}

fn walk(stream: TokenStream, target: &mut usize, m: &Mutation) -> TokenStream {
    let mut tokens: Vec<TokenTree> = stream.into_iter().collect();
    let mut i = 0;
    while i < tokens.len() {
        if *target == 0 {
            match m {
                Mutation::Delete(_) => {
                    tokens.remove(i);
                }
                Mutation::Duplicate(_) => tokens.insert(i, tokens[i].clone()),
                Mutation::Swap(_, d) => {
                    let j = (i + d + 1).min(tokens.len() - 1);
                    tokens.swap(i, j);
                }
                Mutation::Replace(_, p) => tokens[i] = pool(*p),
                Mutation::Insert(_, p) => tokens.insert(i, pool(*p)),
            }
            *target = usize::MAX;
            break;
        }
        *target -= 1;
        if let TokenTree::Group(g) = &tokens[i] {
            let inner = walk(g.stream(), target, m);
            let mut group = Group::new(g.delimiter(), inner);
            group.set_span(g.span());
            tokens[i] = group.into();
            if *target == usize::MAX {
                break;
            }
        }
        i += 1;
    }
    tokens.into_iter().collect()
}

/// A seed's attribute and item after `mutations`, each applied to the attribute or the item
/// as `in_attr` says (cycled).
fn mutated(
    (mut attr, mut item): (TokenStream, TokenStream),
    in_attr: &[bool],
    mutations: &[Mutation],
) -> (TokenStream, TokenStream) {
    for (m, on_attr) in mutations.iter().zip(in_attr.iter().cycle()) {
        if *on_attr {
            attr = apply(attr, m);
        } else {
            item = apply(item, m);
        }
    }
    (attr, item)
}

/// The expansion is either Rust items, or carries `compile_error!`.
fn well_formed(out: &TokenStream) -> bool {
    out.to_string().contains("compile_error") || syn::parse2::<syn::File>(out.clone()).is_ok()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn mutated_handlers_expand_or_say_what_is_wrong(
        which in 0usize..5,
        in_attr in proptest::collection::vec(any::<bool>(), 1..4),
        mutations in proptest::collection::vec(mutation(), 1..4),
    ) {
        let (attr, item) = mutated(handlers()[which].clone(), &in_attr, &mutations);
        let out = crate::handler::expand(attr, item);
        prop_assert!(well_formed(&out), "{}", out);
    }

    #[test]
    fn mutated_inits_expand_or_say_what_is_wrong(
        which in 0usize..2,
        in_attr in proptest::collection::vec(any::<bool>(), 1..4),
        mutations in proptest::collection::vec(mutation(), 1..4),
    ) {
        let (attr, item) = mutated(inits()[which].clone(), &in_attr, &mutations);
        let out = crate::init::expand(attr, item);
        prop_assert!(well_formed(&out), "{}", out);
    }
}

#[test]
fn the_seeds_expand_without_errors() {
    for (attr, item) in handlers() {
        let out = crate::handler::expand(attr, item).to_string();
        assert!(!out.contains("compile_error"), "{out}");
    }
    for (attr, item) in inits() {
        let out = crate::init::expand(attr, item).to_string();
        assert!(!out.contains("compile_error"), "{out}");
    }
    let m = Mutation::Delete(0);
    assert_eq!(apply(quote!(a (b c) d), &m).to_string(), "(b c) d");
    assert_eq!(
        apply(quote!(a (b c) d), &Mutation::Delete(2)).to_string(),
        "a (c) d"
    );
}
