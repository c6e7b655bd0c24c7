//! The program's environment, as websocketd and CGI (RFC 3875) give it:
//! the request (`REQUEST_URI`, `QUERY_STRING`, `HTTP_*` headers, ...),
//! the peer and the server, the route's path parameters as
//! `WSSD_PARAM_<NAME>`, and the route's own `env`. The daemon's own
//! environment is not passed on, except `PATH` and the names in
//! `pass_env`. The table is in docs/exec.md.

use std::net::SocketAddr;

use crate::config::ExecConfig;
use crate::handler::ConnInfo;

/// What the environment is made from, besides the route's configuration.
pub struct Request<'a> {
    /// The connection's request.
    pub info: &'a ConnInfo,
    /// The address the connection came in on.
    pub local: SocketAddr,
    /// Whether the connection is `wss://`.
    pub tls: bool,
    /// The subprotocol selected in the handshake (the route's
    /// `subprotocols`, or the handler's choice), exported as
    /// `WSSD_SUBPROTOCOL`.
    pub subprotocol: Option<&'a str>,
}

/// The variables for the program, in a fixed order; later entries win.
/// `daemon_env` looks up the daemon's own variables.
pub fn build(
    cfg: &ExecConfig,
    req: &Request<'_>,
    daemon_env: impl Fn(&str) -> Option<String>,
) -> Vec<(String, String)> {
    let info = req.info;
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: &str| env.push((k.to_string(), v.to_string()));
    for name in std::iter::once("PATH").chain(cfg.pass_env.iter().map(String::as_str)) {
        if let Some(v) = daemon_env(name) {
            set(name, &v);
        }
    }
    set("REMOTE_ADDR", &info.peer.ip().to_string());
    set("REMOTE_PORT", &info.peer.port().to_string());
    let host = info
        .header("host")
        .map(|v| host_name(v).to_string())
        .unwrap_or_else(|| req.local.ip().to_string());
    set("SERVER_NAME", &host);
    set("SERVER_PORT", &req.local.port().to_string());
    set("SERVER_PROTOCOL", "HTTP/1.1");
    set(
        "SERVER_SOFTWARE",
        concat!("wssd/", env!("CARGO_PKG_VERSION")),
    );
    set("GATEWAY_INTERFACE", "websocketd-CGI/0.1");
    set("REQUEST_METHOD", "GET");
    let uri = if info.query().is_empty() {
        info.path().to_string()
    } else {
        format!("{}?{}", info.path(), info.query())
    };
    set("REQUEST_URI", &uri);
    let (script, path_info) = split_path(info);
    set("SCRIPT_NAME", &script);
    set("PATH_INFO", &path_info);
    set("QUERY_STRING", info.query());
    if req.tls {
        set("HTTPS", "on");
    }
    if let Some(p) = req.subprotocol {
        set("WSSD_SUBPROTOCOL", p);
    }
    set("WSSD_ROUTE", info.route());
    set("WSSD_CONNECTION_ID", &info.id.to_string());
    for (name, value) in info.headers() {
        let key = format!("HTTP_{}", name.to_ascii_uppercase().replace('-', "_"));
        // Repeated headers are joined, as HTTP allows.
        if let Some(old) = env.iter_mut().rev().find(|(k, _)| *k == key) {
            old.1 = format!("{}, {value}", old.1);
        } else {
            env.push((key, value.to_string()));
        }
    }
    for (name, value) in info.params() {
        env.push((
            format!("WSSD_PARAM_{}", name.to_ascii_uppercase()),
            value.to_string(),
        ));
    }
    env.extend(cfg.env.iter().cloned());
    // A value with a NUL byte (a `%00` in a path parameter) cannot be
    // passed; the variable is left out rather than failing the spawn.
    env.retain(|(k, v)| !k.contains('\0') && !v.contains('\0') && !k.contains('='));
    env
}

/// The host of a `Host` header, without the port (IPv6 brackets kept).
fn host_name(host: &str) -> &str {
    match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host,
    }
}

/// `SCRIPT_NAME` and `PATH_INFO`: a route ending in a catch-all
/// `{*rest}` puts the matched remainder in `PATH_INFO` (with its leading
/// `/`) and the path before it in `SCRIPT_NAME`; any other route has the
/// whole path as `SCRIPT_NAME` and an empty `PATH_INFO`.
fn split_path(info: &ConnInfo) -> (String, String) {
    let (route, path) = (info.route(), info.path());
    let last = route.rsplit('/').next().unwrap_or("");
    let catch_all = last
        .strip_prefix("{*")
        .and_then(|n| n.strip_suffix('}'))
        .and_then(|name| info.param(name));
    let Some(rest) = catch_all else {
        return (path.to_string(), String::new());
    };
    // The template's literal prefix is the script: everything before the
    // catch-all's segment, counted in segments of the raw path.
    let depth = route.matches('/').count();
    let mut cut = 0;
    for (n, (i, _)) in path.match_indices('/').enumerate() {
        cut = i;
        if n + 1 == depth {
            break;
        }
    }
    (path[..cut].to_string(), format!("/{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ExecMode;
    use crate::handler::ConnId;
    use std::time::Duration;

    fn cfg() -> ExecConfig {
        ExecConfig {
            command: vec!["env".into()],
            working_dir: None,
            env: vec![("EXTRA".into(), "x".into())],
            pass_env: vec!["HOME".into()],
            mode: ExecMode::Lines,
            max_processes: None,
            kill_grace: Duration::from_secs(5),
        }
    }

    fn info(route: &str, path: &str, params: &[(&str, &str)]) -> ConnInfo {
        let params: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let headers = [
            ("Host", "example.com:8080"),
            ("X-Thing", "one"),
            ("x-thing", "two"),
        ];
        let request = crate::handler::InfoRequest {
            route,
            path,
            query: "a=1&b=2",
            params: &params,
            headers: headers.iter().copied(),
        };
        let peer = "10.0.0.1:5555".parse().unwrap();
        ConnInfo::new(ConnId(7), peer, request, None, Default::default(), false)
    }

    fn get<'a>(env: &'a [(String, String)], k: &str) -> Option<&'a str> {
        env.iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn cgi_variables_headers_and_params() {
        let i = info("/chat/{room}", "/chat/lobby", &[("room", "lobby")]);
        let req = Request {
            info: &i,
            local: "127.0.0.1:8080".parse().unwrap(),
            tls: true,
            subprotocol: None,
        };
        let env = build(&cfg(), &req, |k| match k {
            "PATH" => Some("/bin".into()),
            "HOME" => Some("/root".into()),
            _ => Some("leaked".into()),
        });
        assert_eq!(get(&env, "PATH"), Some("/bin"));
        assert_eq!(get(&env, "HOME"), Some("/root"));
        assert_eq!(get(&env, "USER"), None);
        assert_eq!(get(&env, "REMOTE_ADDR"), Some("10.0.0.1"));
        assert_eq!(get(&env, "REMOTE_PORT"), Some("5555"));
        assert_eq!(get(&env, "SERVER_NAME"), Some("example.com"));
        assert_eq!(get(&env, "SERVER_PORT"), Some("8080"));
        assert_eq!(get(&env, "REQUEST_URI"), Some("/chat/lobby?a=1&b=2"));
        assert_eq!(get(&env, "QUERY_STRING"), Some("a=1&b=2"));
        assert_eq!(get(&env, "SCRIPT_NAME"), Some("/chat/lobby"));
        assert_eq!(get(&env, "PATH_INFO"), Some(""));
        assert_eq!(get(&env, "HTTPS"), Some("on"));
        assert_eq!(get(&env, "HTTP_X_THING"), Some("one, two"));
        assert_eq!(get(&env, "WSSD_PARAM_ROOM"), Some("lobby"));
        assert_eq!(get(&env, "EXTRA"), Some("x"));
    }

    #[test]
    fn catch_all_is_path_info() {
        let i = info("/files/{*rest}", "/files/a/b%20c", &[("rest", "a/b c")]);
        let req = Request {
            info: &i,
            local: "127.0.0.1:1".parse().unwrap(),
            tls: false,
            subprotocol: Some("chat"),
        };
        let env = build(&cfg(), &req, |_| None);
        assert_eq!(get(&env, "SCRIPT_NAME"), Some("/files"));
        assert_eq!(get(&env, "PATH_INFO"), Some("/a/b c"));
        assert_eq!(get(&env, "WSSD_PARAM_REST"), Some("a/b c"));
        assert_eq!(get(&env, "HTTPS"), None);
        assert_eq!(get(&env, "WSSD_SUBPROTOCOL"), Some("chat"));
        assert_eq!(host_name("[::1]:80"), "[::1]");
        assert_eq!(host_name("[::1]"), "[::1]");
    }
}
