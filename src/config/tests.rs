//! Tests of the whole configuration: parsing, defaults, errors.

use super::*;
use std::time::Duration;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_str(text, Path::new("t.toml"))
}

#[test]
fn durations_accept_numbers_and_units() {
    assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
    assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
    assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
    assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
    assert_eq!(parse_duration("5 parsecs"), None);
    assert_eq!(parse_duration(""), None);
}

#[test]
fn sizes_accept_units() {
    assert_eq!(parse_size("64KiB"), Some(65536));
    assert_eq!(parse_size("16M"), Some(16 << 20));
    assert_eq!(parse_size("12"), Some(12));
    assert_eq!(parse_size("12 apples"), None);
}

#[test]
fn minimal_config_gets_defaults() {
    let c = parse("[[routes]]\npath = \"/echo\"\nhandler = \"echo\"\n").unwrap();
    assert_eq!(c.server.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(c.server.handshake_timeout, Duration::from_secs(10));
    assert_eq!(c.server.idle_timeout, None);
    assert_eq!(c.routes.len(), 1);
    assert!(c.routes[0].echo_self);
    assert!(c.log.access_log);
}

#[test]
fn access_log_is_a_switch() {
    let routes = "[[routes]]\npath = \"/echo\"\nhandler = \"echo\"\n";
    let c = parse(&format!("[log]\naccess_log = false\n{routes}")).unwrap();
    assert!(!c.log.access_log);
    let e = parse(&format!("[log]\naccess_log = \"yes\"\n{routes}")).unwrap_err();
    assert_eq!(e.key, "log.access_log");
}

#[test]
fn unknown_keys_are_named_with_their_table() {
    let e = parse("[server]\nlisen = \"x\"\n").unwrap_err();
    assert_eq!(e.key, "server.lisen");
    let e = parse("[bogus]\n").unwrap_err();
    assert_eq!(e.key, "bogus");
    let e = parse("[[routes]]\npath=\"/a\"\nhandler=\"echo\"\ncolour=1\n").unwrap_err();
    assert_eq!(e.key, "routes[0].colour");
}

#[test]
fn wrong_types_and_ranges_are_named() {
    let e = parse("[server]\nworkers = \"many\"\n").unwrap_err();
    assert_eq!(e.key, "server.workers");
    let e = parse("[server]\nworkers = 0\n").unwrap_err();
    assert!(e.reason.contains("out of range"), "{e}");
    let e = parse("[server]\nhandshake_timeout = \"soon\"\n").unwrap_err();
    assert_eq!(e.key, "server.handshake_timeout");
    let e = parse("[server]\ndrain_timeout = 9223372036854775807\n").unwrap_err();
    assert_eq!(e.key, "server.drain_timeout");
    let e = parse("[server]\nlisten = \"nowhere\"\n").unwrap_err();
    assert_eq!(e.key, "server.listen");
}

#[test]
fn every_error_is_reported_in_file_order() {
    let e =
        parse("[server]\nworkers = 0\nidle_timeout = \"x\"\nwrkers = 2\n[log]\nlevel = \"loud\"\n")
            .unwrap_err();
    let keys: Vec<&str> = e.all().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "server.workers",
            "server.idle_timeout",
            "server.wrkers",
            "log.level"
        ]
    );
    let text = e.to_string();
    assert!(
        text.starts_with("t.toml: 4 errors:\n  key `server.workers`"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 5, "{text}");
}

#[test]
fn unknown_keys_get_the_closest_known_key() {
    let e = parse("[server]\nworker = 2\n").unwrap_err();
    assert_eq!(e.reason, "unknown key: did you mean `workers`?");
    let e = parse("[servr]\n").unwrap_err();
    assert!(e.reason.contains("`server`"), "{e}");
    let e = parse("[[routes]]\npath=\"/a\"\nhandler=\"echo\"\nechoself=false\n").unwrap_err();
    assert!(e.reason.contains("`echo_self`"), "{e}");
    // Nothing close: no guess.
    let e = parse("[server]\ncolour = 2\n").unwrap_err();
    assert!(!e.reason.contains("did you mean"), "{e}");
}

#[test]
fn syntax_errors_keep_the_snippet_and_marker() {
    let e = parse("[server]\nworkers = = 4\n").unwrap_err();
    let lines: Vec<&str> = e.reason.lines().collect();
    let code = lines
        .iter()
        .position(|l| l.contains("workers = = 4"))
        .unwrap();
    let marker = lines[code + 1];
    let column = marker.find('^').expect("a ^ marker under the line");
    assert_eq!(&lines[code][column..column + 1], "=", "{}", e.reason);
    assert_eq!(lines[code][..column].matches('=').count(), 1);
}

#[test]
fn join_flattens_and_keeps_order() {
    let f = Path::new("f.toml");
    let nested = ConfigError::join([ConfigError::new(f, "a", "1"), ConfigError::new(f, "b", "2")]);
    let all = ConfigError::join(nested.into_iter().chain([ConfigError::new(f, "c", "3")])).unwrap();
    let keys: Vec<&str> = all.all().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["a", "b", "c"]);
    assert!(ConfigError::join([]).is_none());
}

#[test]
fn workers_auto_is_cpu_count() {
    let c = parse("[server]\nworkers = \"auto\"\n").unwrap();
    assert_eq!(c.server.workers, cpu_count());
}

#[test]
fn status_and_cluster_tables_are_optional_and_checked() {
    let c = parse("").unwrap();
    assert!(c.status.is_none() && c.cluster.is_none());
    let c = parse("[status]\n[cluster]\nredis_url = \"redis://:pw@127.0.0.1:6380/0\"\n").unwrap();
    assert_eq!(c.status.unwrap().listen, "127.0.0.1:9100".parse().unwrap());
    let cluster = c.cluster.unwrap();
    assert_eq!(cluster.channel_prefix, "wssd");
    assert!(cluster
        .instance_id()
        .ends_with(&format!("-{}", std::process::id())));
    let e = parse("[cluster]\nredis_url = \"http://x\"\n").unwrap_err();
    assert_eq!(e.key, "cluster.redis_url");
    let e = parse("[cluster]\n").unwrap_err();
    assert_eq!(e.key, "cluster.redis_url");
    let e = parse("[status]\nlisten = \"nowhere\"\n").unwrap_err();
    assert_eq!(e.key, "status.listen");
    let e = parse("[status]\ncolour = 1\n").unwrap_err();
    assert_eq!(e.key, "status.colour");
}

#[test]
fn route_subprotocols_parse_and_are_checked() {
    let c = parse("[[routes]]\npath=\"/a\"\nhandler=\"echo\"\nsubprotocols=[\"chat.v2\",\"chat.v1\"]\nsubprotocol_required=true\n").unwrap();
    assert_eq!(c.routes[0].subprotocols, ["chat.v2", "chat.v1"]);
    assert!(c.routes[0].subprotocol_required);
    let c = parse("[[routes]]\npath=\"/a\"\nhandler=\"echo\"\n").unwrap();
    assert!(c.routes[0].subprotocols.is_empty() && !c.routes[0].subprotocol_required);
    let e =
        parse("[[routes]]\npath=\"/a\"\nhandler=\"echo\"\nsubprotocols=[\"a b\"]\n").unwrap_err();
    assert_eq!(e.key, "routes[0].subprotocols[0]");
    let e = parse("[[routes]]\npath=\"/a\"\nhandler=\"echo\"\nsubprotocol_required=true\n")
        .unwrap_err();
    assert_eq!(e.key, "routes[0].subprotocol_required");
}

#[test]
fn limits_parse_with_defaults_and_named_errors() {
    let c = parse("").unwrap();
    assert_eq!(c.limits.max_connections_per_ip, None);
    assert_eq!(c.limits.ipv6_prefix, 64);
    assert!(!c.server.proxy_protocol);
    let c = parse(
        "[server]\nproxy_protocol = true\n[limits]\nmax_connections_per_ip = 5\nhandshake_rate_per_ip = \"20/s\"\nipv6_prefix = 56\nexempt = [\"127.0.0.1/32\"]\ntrusted_proxies = [\"10.0.0.0/8\"]\n",
    )
    .unwrap();
    assert!(c.server.proxy_protocol);
    assert_eq!(c.limits.max_connections_per_ip, Some(5));
    assert_eq!(c.limits.handshake_rate_per_ip.unwrap().count, 20);
    assert_eq!(c.limits.handshake_burst, 20);
    assert_eq!(c.limits.ipv6_prefix, 56);
    assert!(c.limits.exempt.contains("127.0.0.1".parse().unwrap()));
    assert!(c
        .limits
        .trusted_proxies
        .contains("10.9.9.9".parse().unwrap()));
    let e = parse("[limits]\nhandshake_rate_per_ip = \"fast\"\n").unwrap_err();
    assert_eq!(e.key, "limits.handshake_rate_per_ip");
    let e = parse("[limits]\ntrusted_proxies = [\"10.0.0.0/8\", \"nope\"]\n").unwrap_err();
    assert_eq!(e.key, "limits.trusted_proxies[1]");
    let e = parse("[limits]\nhandshake_burst = 5\n").unwrap_err();
    assert_eq!(e.key, "limits.handshake_burst");
    let e = parse("[limits]\nipv6_prefix = 129\n").unwrap_err();
    assert_eq!(e.key, "limits.ipv6_prefix");
    let e = parse("[limits]\nmax_conns = 1\n").unwrap_err();
    assert_eq!(e.key, "limits.max_conns");
}

#[test]
fn exec_routes_parse_and_name_their_keys() {
    let c = parse(
        "[[routes]]\npath=\"/x\"\nhandler=\"exec\"\ncommand=[\"cat\"]\nenv={A=\"1\"}\nmode=\"binary\"\nmax_processes=3\nkill_grace=\"200ms\"\n",
    )
    .unwrap();
    let e = c.routes[0].exec.as_ref().unwrap();
    assert_eq!(e.command, vec!["cat".to_string()]);
    assert_eq!(e.env, vec![("A".to_string(), "1".to_string())]);
    assert_eq!(e.mode, ExecMode::Binary);
    assert_eq!(e.max_processes, Some(3));
    assert_eq!(e.kill_grace, Duration::from_millis(200));
    let e = parse("[[routes]]\npath=\"/x\"\nhandler=\"exec\"\n").unwrap_err();
    assert_eq!(e.key, "routes[0].command");
    let e = parse("[[routes]]\npath=\"/x\"\nhandler=\"exec\"\ncommand=[]\n").unwrap_err();
    assert_eq!(e.key, "routes[0].command");
    let e = parse("[[routes]]\npath=\"/x\"\nhandler=\"exec\"\ncommand=[\"cat\"]\nmode=\"words\"\n")
        .unwrap_err();
    assert_eq!(e.key, "routes[0].mode");
    let e = parse("[[routes]]\npath=\"/x\"\nhandler=\"exec\"\ncommand=[\"cat\"]\nenv={A=1}\n")
        .unwrap_err();
    assert_eq!(e.key, "routes[0].env.A");
    // exec keys on another handler are unknown keys.
    let e = parse("[[routes]]\npath=\"/x\"\nhandler=\"echo\"\ncommand=[\"cat\"]\n").unwrap_err();
    assert_eq!(e.key, "routes[0].command");
}

#[test]
fn compression_is_off_unless_turned_on_and_routes_override() {
    let route = "[[routes]]\npath = \"/a\"\nhandler = \"echo\"\n";
    let c = parse(route).unwrap();
    assert_eq!(c.server.compression, Compression::Off);
    assert_eq!(c.routes[0].compression(&c.server), Compression::Off);
    assert_eq!(c.compression, deflate::Settings::default());
    let c = parse(&format!(
        "[server]\ncompression = \"deflate\"\n{route}[[routes]]\npath = \"/b\"\nhandler = \"echo\"\ncompression = \"off\"\n"
    ))
    .unwrap();
    assert_eq!(c.routes[0].compression(&c.server), Compression::Deflate);
    assert_eq!(c.routes[1].compression(&c.server), Compression::Off);
    let c = parse(&format!("{route}compression = \"deflate\"\n")).unwrap();
    assert_eq!(c.routes[0].compression(&c.server), Compression::Deflate);
}

#[test]
fn the_compression_table_is_read_and_checked() {
    let c = parse(
        "[compression]\nserver_context_takeover = true\nclient_context_takeover = true\nserver_max_window_bits = 10\nclient_max_window_bits = 11\nmemory_level = 4\nlevel = 6\nthreshold = \"1KiB\"\n",
    )
    .unwrap();
    assert_eq!(
        c.compression,
        deflate::Settings {
            server_context_takeover: true,
            client_context_takeover: true,
            server_max_window_bits: 10,
            client_max_window_bits: 11,
            memory_level: 4,
            level: 6,
            threshold: 1024,
        }
    );
    for (text, key, why) in [
        (
            "[server]\ncompression = \"gzip\"\n",
            "server.compression",
            "\"off\" or \"deflate\"",
        ),
        (
            "[server]\ncompression = true\n",
            "server.compression",
            "expected a string",
        ),
        (
            "[[routes]]\npath=\"/a\"\nhandler=\"echo\"\ncompression=\"on\"\n",
            "routes[0].compression",
            "\"off\" or \"deflate\"",
        ),
        (
            "[compression]\nserver_max_window_bits = 8\n",
            "compression.server_max_window_bits",
            "expected 9 to 15",
        ),
        (
            "[compression]\nclient_max_window_bits = 16\n",
            "compression.client_max_window_bits",
            "expected 9 to 15",
        ),
        (
            "[compression]\nmemory_level = 0\n",
            "compression.memory_level",
            "expected 1 to 9",
        ),
        (
            "[compression]\nlevel = 10\n",
            "compression.level",
            "expected 1 to 9",
        ),
        (
            "[compression]\nthreshold = \"lots\"\n",
            "compression.threshold",
            "is not a size",
        ),
        (
            "[compression]\nserver_context_takeover = \"yes\"\n",
            "compression.server_context_takeover",
            "expected true or false",
        ),
        (
            "[compression]\nwindow = 15\n",
            "compression.window",
            "unknown key",
        ),
        ("compression = 1\n", "compression", "expected a table"),
    ] {
        let e = parse(text).unwrap_err();
        assert_eq!(e.key, key, "{text}");
        assert!(e.reason.contains(why), "{text}: {e}");
    }
}

#[test]
fn ipv6_listen_parses() {
    let c = parse("[server]\nlisten = \"[::1]:0\"\n").unwrap();
    assert!(c.server.listen.is_ipv6());
}
