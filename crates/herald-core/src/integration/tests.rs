//! The integration loader against the SPEC §7 example and against mistakes.

use std::path::Path;

use serde_json::json;

use super::*;

/// SPEC §7's example, as written.
const SHOPIFY: &str = r#"
name: shopify
secret: ${SHOPIFY_WEBHOOK_SECRET}
verify:                                   # how a request proves it comes from the platform
  scheme: hmac-sha256                     # or a platform preset (github, stripe, slack, twilio, …), hmac, bearer, basic, none
  header: X-Shopify-Hmac-Sha256
  encoding: base64
events:
  newOrderCreated:
    when: { header: { x-shopify-topic: orders/create } }
    payload:                              # JSON pointers / templates into the request
      order_id: /id
      shopName: "{{config.shopName}}"
      confirmation_number: /confirmation_number
      created_at: /created_at
      currency: /currency
      fullBody: /
    schema:                               # JSON Schema of the mapped payload
      type: object
      required: [order_id, shopName, created_at]
      properties:
        order_id: { type: integer }
        shopName: { type: string }
        created_at: { type: string }
    route: { bot: shop, contact: /customer/id }   # who receives it
"#;

fn env(name: &str) -> Option<String> {
    (name == "SHOPIFY_WEBHOOK_SECRET").then(|| "hush".to_owned())
}

fn parse(name: &str, text: &str) -> Result<IntegrationDef, Vec<crate::diag::Diagnostic>> {
    parse_integration(name, Path::new("integrations/x.yaml"), text, &env)
}

fn errors(name: &str, text: &str) -> Vec<String> {
    match parse(name, text) {
        Ok(_) => panic!("expected errors in:\n{text}"),
        Err(d) => d
            .into_iter()
            .map(|d| format!("{}:{} {}", d.line, d.col, d.message))
            .collect(),
    }
}

#[test]
fn the_spec_example_loads_as_written() {
    let def = parse("shopify", SHOPIFY).expect("loads");
    assert_eq!(def.name, "shopify");
    assert_eq!(def.secrets, vec![Secret("hush".into())]);
    assert_eq!(def.verify.scheme, Scheme::Hmac);
    assert_eq!(def.verify.algorithm, HmacAlgorithm::Sha256);
    assert_eq!(def.verify.encoding, Encoding::Base64);
    assert_eq!(def.verify.header.as_deref(), Some("x-shopify-hmac-sha256"));
    let e = def.event("newOrderCreated").expect("event");
    assert_eq!(
        e.when,
        vec![Condition::Header(
            "x-shopify-topic".into(),
            vec!["orders/create".into()]
        )]
    );
    let Mapping::Object(fields) = &e.payload else {
        panic!("object payload")
    };
    let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "order_id",
            "shopName",
            "confirmation_number",
            "created_at",
            "currency",
            "fullBody"
        ]
    );
    assert!(
        matches!(&fields[1].1, Mapping::Template(p) if p == &vec![TemplatePart::Path(Root::Config, vec!["shopName".into()])])
    );
    assert!(
        e.schema
            .as_ref()
            .is_some_and(|s| !s.is_valid(&json!({"order_id": "x"})))
    );
    assert_eq!(e.route.bot.as_deref(), Some("shop"));
    assert!(matches!(&e.route.who, Who::Contact(p) if p.as_str() == "/customer/id"));
    assert!(
        def.dedupe.id.is_none(),
        "a generic hmac has no delivery id unless `dedupe` names one"
    );
}

#[test]
fn presets_bring_their_delivery_ids_and_secret_lists_rotate() {
    let def = parse(
        "gh",
        "secret: [old, new]\nverify: {scheme: github}\nevents:\n  push:\n    route: {subscriber: /sender/login}\n",
    )
    .expect("loads");
    assert_eq!(def.secrets.len(), 2);
    assert_eq!(
        def.dedupe.id,
        Some(DeliveryId::Header("x-github-delivery".into()))
    );
    let def = parse(
        "st",
        "secret: s\nverify: {scheme: stripe}\ndedupe: {header: X-Id, window: 3d}\nevents:\n  paid:\n    route: {subscriber: /data/object/customer}\n",
    )
    .expect("loads");
    assert_eq!(def.dedupe.id, Some(DeliveryId::Header("x-id".into())));
    assert_eq!(
        def.dedupe.window,
        std::time::Duration::from_secs(3 * 86_400)
    );
}

#[test]
fn a_missing_secret_fails_closed_with_a_hint() {
    let e = errors(
        "gh",
        "verify: {scheme: github}\nevents:\n  push:\n    route: {subscriber: /x}\n",
    );
    assert!(e[0].contains("needs a secret"), "{e:?}");
    let e = errors(
        "gh",
        "secret: \"\"\nverify: {scheme: github}\nevents:\n  push:\n    route: {subscriber: /x}\n",
    );
    assert!(e[0].contains("needs a secret"), "{e:?}");
    // `none` must be written; then no secret is needed.
    parse(
        "open",
        "verify: {scheme: none}\nevents:\n  ping:\n    route: {subscriber: /x}\n",
    )
    .expect("explicit none loads");
    let e = errors("open", "events:\n  ping:\n    route: {subscriber: /x}\n");
    assert!(e[0].contains("needs `verify:`"), "{e:?}");
}

#[test]
fn mistakes_are_reported_with_their_place() {
    let e = errors(
        "x",
        "secret: s\nverify: {scheme: githib}\nevents:\n  a:\n    when: {body: {nope: 1}}\n    payload: {x: \"{{ bodyy.a }}\", y: /a~2}\n    schema: {type: 12}\n    route: {bot: shop}\n  noMatch:\n    route: {subscriber: /x}\n",
    );
    let all = e.join("\n");
    assert!(
        all.contains("unknown verification scheme `githib`"),
        "{all}"
    );
    assert!(all.contains("not a JSON pointer"), "{all}");
    assert!(all.contains("reads `bodyy`"), "{all}");
    assert!(all.contains("not a valid JSON Schema"), "{all}");
    assert!(all.contains("needs `contact` or `subscriber`"), "{all}");
    assert!(all.contains("reserved system event"), "{all}");
    assert!(e[0].starts_with("2:"), "sorted by line: {all}");
}

#[test]
fn templates_read_paths_with_indexes_and_headers_in_lower_case() {
    assert_eq!(
        parse::template("#{{ body.items[0].sku }} at {{headers.X-Shop}}").expect("parses"),
        vec![
            TemplatePart::Text("#".into()),
            TemplatePart::Path(Root::Body, vec!["items".into(), "0".into(), "sku".into()]),
            TemplatePart::Text(" at ".into()),
            TemplatePart::Path(Root::Headers, vec!["x-shop".into()]),
        ]
    );
    assert!(parse::template("{{ body.a").is_err());
}

#[test]
fn a_hole_reads_one_value_and_computes_nothing() {
    for bad in [
        "{{ body.a || 'x' }}",
        "{{ body.a + 1 }}",
        "{{ headers }}",
        "{{ body.a b }}",
    ] {
        assert!(parse::template(bad).is_err(), "{bad} should be refused");
    }
    assert!(parse::template("{{ body }}").is_ok());
    assert!(parse::template("{{ body.event-data.id }}").is_ok());
}

#[test]
fn a_null_literal_stays_null_and_a_quoted_one_stays_text() {
    let def = parse(
        "x",
        "secret: s\nverify: {scheme: github}\nevents:\n  a:\n    payload: {n: null, t: ~, q: \"null\"}\n    route: {bot: shop, contact: /c}\n",
    )
    .expect("parses");
    let Mapping::Object(fields) = &def.events[0].payload else {
        panic!("an object mapping");
    };
    let lit = |k: &str| match fields.iter().find(|(f, _)| f == k) {
        Some((_, Mapping::Literal(v))) => v.clone(),
        other => panic!("{k}: {other:?}"),
    };
    assert_eq!(lit("n"), serde_json::Value::Null);
    assert_eq!(lit("t"), serde_json::Value::Null);
    assert_eq!(lit("q"), serde_json::json!("null"));
}

#[test]
fn a_rate_alone_brings_a_burst_of_two_seconds() {
    let def = parse(
        "x",
        "secret: s\nverify: {scheme: github}\nlimits: {rate: 10}\nevents:\n  a:\n    route: {bot: shop, contact: /c}\n",
    )
    .expect("parses");
    assert_eq!((def.limits.rate, def.limits.burst), (10, 20));
}

#[test]
fn keys_with_a_format_and_signed_ids_without_their_header_are_load_errors() {
    let route = "events:\n  a:\n    route: {bot: shop, contact: /c}\n";
    let all = errors(
        "x",
        &format!("secret: whsec_not*base64\nverify: {{scheme: standard-webhooks}}\n{route}"),
    )
    .join("\n");
    assert!(all.contains("not base64 after `whsec_`"), "{all}");
    let all = errors(
        "x",
        &format!("secret: abc123\nverify: {{scheme: discord}}\n{route}"),
    )
    .join("\n");
    assert!(all.contains("64 hexadecimal digits"), "{all}");
    let all = errors(
        "x",
        &format!("secret: not-a-key\nverify: {{scheme: sendgrid}}\n{route}"),
    )
    .join("\n");
    assert!(all.contains("not base64 DER"), "{all}");
    let all = errors(
        "x",
        &format!(
            "secret: s\nverify: {{scheme: hmac, header: X-Sig, content: \"{{id}}.{{body}}\"}}\n{route}"
        ),
    )
    .join("\n");
    assert!(
        all.contains("signs `{id}` but `idHeader` is missing"),
        "{all}"
    );
}
