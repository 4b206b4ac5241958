//! Tests of `raw`.
use super::*;
use std::path::Path;

fn find<'a>(table: &'a Table, key: &str) -> &'a Entry {
    table.entries.iter().find(|e| e.key == key).unwrap()
}

#[test]
fn header_inline_and_dotted_tables_become_the_same_tree_with_spans() {
    let text =
        "[services.a]\ncommand = [\"x\", \"y\"]\nenv.FOO = \"1\"\nbackoff = { initial = \"1s\" }\n";
    let root = parse(text).unwrap();
    let services = find(&root, "services");
    let Value::Table(services) = &services.node.value else {
        panic!()
    };
    let a = find(services, "a");
    assert_eq!(&text[a.key_span.clone()], "a");
    let Value::Table(a) = &a.node.value else {
        panic!()
    };
    let command = find(a, "command");
    assert_eq!(&text[command.node.span.clone()], "[\"x\", \"y\"]");
    let Value::Array(elements) = &command.node.value else {
        panic!()
    };
    assert_eq!(&text[elements[1].span.clone()], "\"y\"");
    let Value::Table(env) = &find(a, "env").node.value else {
        panic!()
    };
    assert_eq!(find(env, "FOO").node.value, Value::String("1".into()));
    let Value::Table(backoff) = &find(a, "backoff").node.value else {
        panic!()
    };
    let initial = find(backoff, "initial");
    assert_eq!(&text[initial.key_span.clone()], "initial");
    assert_eq!(&text[initial.node.span.clone()], "\"1s\"");
}

#[test]
fn syntax_errors_keep_their_position() {
    let text = "a = 1\nb = \"open\n";
    let err = parse(text).unwrap_err();
    assert_eq!(err.span.start, text.find("open").unwrap() + 4);
    assert!(err.message.contains("string"), "{}", err.message);
}

#[test]
fn read_reports_every_unknown_key_and_keeps_the_known_ones() {
    let text = "restrat = \"always\"\ncommand = \"x\"\nzzz = 1\n";
    let table = parse(text).unwrap();
    let mut report = Report::new(Path::new("f.toml"), text);
    let service = RawService::read(&table, "services.a", &mut report);
    assert_eq!(service.command.unwrap().path, "services.a.command");
    assert!(service.restart.is_none());
    let err = report.finish().unwrap_err();
    let [first, second] = err.diagnostics() else {
        panic!("{err}")
    };
    assert_eq!(
        first.message,
        "unknown key `restrat` in [services.a], did you mean `restart`?"
    );
    assert_eq!(first.key.as_deref(), Some("services.a.restrat"));
    assert_eq!((first.line, first.column), (Some(1), Some(1)));
    assert_eq!(second.message, "unknown key `zzz` in [services.a]");
    assert!(second
        .help
        .as_deref()
        .unwrap()
        .starts_with("allowed keys in [services.NAME]: command, cwd"));
}

#[test]
fn check_keys_of_another_kind_are_named_as_such() {
    let text =
        "kind = \"http\"\nurl = \"x\"\npointer = \"/a\"\nadress = \"x\"\nbody_contain = \"ok\"\n";
    let table = parse(text).unwrap();
    let mut report = Report::new(Path::new("f.toml"), text);
    let check = RawCheck::read_kind(&table, "checks.h", "http", &mut report);
    assert!(check.url.is_some() && check.kind.is_some());
    assert!(check.pointer.is_none(), "a misplaced key is not taken");
    let err = report.finish().unwrap_err();
    let messages: Vec<&str> = err
        .diagnostics()
        .iter()
        .map(|d| d.message.as_str())
        .collect();
    assert_eq!(
        messages,
        [
            "`pointer` is a key of json checks, this check is kind = \"http\"",
            // `address` is a tcp key: no did-you-mean toward another kind's key.
            "unknown key `adress` in [checks.h]",
            "unknown key `body_contain` in [checks.h], did you mean `body_contains`?",
        ]
    );
    assert!(err.diagnostics()[0]
        .help
        .as_deref()
        .unwrap()
        .starts_with("keys of http checks: url, method, expect_status, body_contains;"));
}

#[test]
fn the_check_table_declares_exactly_the_keys_of_all_kinds() {
    let mut declared: Vec<&str> = CHECK_COMMON_KEYS.to_vec();
    for (_, keys) in CHECK_KIND_KEYS {
        declared.extend(
            keys.iter()
                .filter(|key| !declared.contains(key))
                .collect::<Vec<_>>(),
        );
    }
    declared.sort_unstable();
    let mut table: Vec<&str> = RawCheck::KEYS.to_vec();
    table.sort_unstable();
    assert_eq!(declared, table);
    // Without a known kind, the help lists every kind's keys.
    assert!(check_keys_help(None).contains("; exec: command"));
    assert!(check_keys_help(Some("nope")).starts_with("keys of every check:"));
}

#[test]
fn generic_paths_and_labels() {
    assert_eq!(
        generic_path("services.send_text.backoff"),
        "services.NAME.backoff"
    );
    assert_eq!(
        generic_path("checks.errors.pattern[2]"),
        "checks.NAME.pattern"
    );
    assert_eq!(
        generic_path("services.\"a.b\".backoff"),
        "services.NAME.backoff"
    );
    assert_eq!(generic_path("supervisor"), "supervisor");
    assert_eq!(table_label("checks.errors"), "[checks.errors]");
    assert_eq!(
        table_label(&index_path("checks.errors.pattern", 2)),
        "[[checks.errors.pattern]] #2"
    );
    assert_eq!(split_path("a.\"b.\\\"c\".d"), ["a", "\"b.\\\"c\"", "d"]);
}

#[test]
fn paths_quote_keys_that_are_not_bare() {
    assert_eq!(join_path("", "services"), "services");
    assert_eq!(join_path("services", "send_text"), "services.send_text");
    assert_eq!(join_path("services", "send.text"), "services.\"send.text\"");
    assert_eq!(join_path("services", ""), "services.\"\"");
}
