//! Path templates and the route table.
//!
//! A template is a sequence of `/`-separated segments: literals (`chat`),
//! named parameters (`{room}`) matching one non-empty segment, and a final
//! catch-all (`{*rest}`) matching the remainder. When several templates
//! match, the one whose first differing segment is more specific wins
//! (literal over parameter over catch-all), so `/chat/admin` beats
//! `/chat/{room}`. Two templates that would match exactly the same paths
//! are rejected at load time.

use std::fmt;

/// Path parameters as (name, percent-decoded value), in template order.
pub type Params = Vec<(String, String)>;

/// One segment of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
    CatchAll(String),
}

impl Segment {
    /// Higher is more specific.
    fn rank(&self) -> u8 {
        match self {
            Segment::Literal(_) => 2,
            Segment::Param(_) => 1,
            Segment::CatchAll(_) => 0,
        }
    }

    /// Whether two segments at the same position match the same inputs.
    fn same_shape(&self, other: &Segment) -> bool {
        match (self, other) {
            (Segment::Literal(a), Segment::Literal(b)) => a == b,
            (Segment::Param(_), Segment::Param(_)) => true,
            (Segment::CatchAll(_), Segment::CatchAll(_)) => true,
            _ => false,
        }
    }
}

/// A parsed path template such as `/chat/{room}`.
#[derive(Debug, Clone)]
pub struct Template {
    text: String,
    segments: Vec<Segment>,
}

/// Why a template cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError(pub String);

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Template {
    /// Parses a template; see the module documentation for the syntax.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let rest = text
            .strip_prefix('/')
            .ok_or_else(|| TemplateError(format!("\"{text}\" must start with '/'")))?;
        let mut segments = Vec::new();
        let mut names: Vec<String> = Vec::new();
        let parts: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        for (i, part) in parts.iter().enumerate() {
            let seg = parse_segment(part, text)?;
            if let Segment::Param(n) | Segment::CatchAll(n) = &seg {
                if names.contains(n) {
                    return Err(TemplateError(format!(
                        "\"{text}\" names the parameter {{{n}}} twice"
                    )));
                }
                names.push(n.clone());
            }
            if matches!(seg, Segment::CatchAll(_)) && i + 1 != parts.len() {
                return Err(TemplateError(format!(
                    "\"{text}\": a catch-all {{*name}} must be the last segment"
                )));
            }
            segments.push(seg);
        }
        Ok(Template {
            text: text.to_string(),
            segments,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Matches a request path (without the query string); returns the
    /// percent-decoded parameters in template order.
    pub fn matches(&self, path: &str) -> Option<Params> {
        let rest = path.strip_prefix('/')?;
        // The segments not matched yet, `None` once there are none (the
        // path "/" has none; "/a/" has two, "a" and "").
        let mut rest = Some(rest).filter(|r| !r.is_empty());
        let mut params = Vec::new();
        for seg in &self.segments {
            match seg {
                Segment::CatchAll(name) => {
                    let remainder = rest.unwrap_or_default();
                    params.push((name.clone(), percent_decode(remainder)?));
                    return Some(params);
                }
                Segment::Literal(lit) => {
                    if next_segment(&mut rest) != Some(lit.as_str()) {
                        return None;
                    }
                }
                Segment::Param(name) => {
                    let part = next_segment(&mut rest).filter(|p| !p.is_empty())?;
                    params.push((name.clone(), percent_decode(part)?));
                }
            }
        }
        rest.is_none().then_some(params)
    }

    /// Whether `self` and `other` match exactly the same set of paths.
    fn same_shape(&self, other: &Template) -> bool {
        self.segments.len() == other.segments.len()
            && self
                .segments
                .iter()
                .zip(&other.segments)
                .all(|(a, b)| a.same_shape(b))
    }

    /// Ordering by specificity: the first segment that differs in kind
    /// decides.
    fn more_specific_than(&self, other: &Template) -> bool {
        for (a, b) in self.segments.iter().zip(&other.segments) {
            if a.rank() != b.rank() {
                return a.rank() > b.rank();
            }
        }
        self.segments.len() > other.segments.len()
    }
}

/// Takes the next `/`-separated segment off `rest` (see
/// [`Template::matches`]).
fn next_segment<'p>(rest: &mut Option<&'p str>) -> Option<&'p str> {
    match rest.and_then(|r| r.split_once('/')) {
        Some((segment, after)) => {
            *rest = Some(after);
            Some(segment)
        }
        None => rest.take(),
    }
}

fn parse_segment(part: &str, text: &str) -> Result<Segment, TemplateError> {
    if let Some(inner) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
        let (catch_all, name) = match inner.strip_prefix('*') {
            Some(n) => (true, n),
            None => (false, inner),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(TemplateError(format!(
                "\"{text}\": parameter names are letters, digits and '_', as in {{room}}"
            )));
        }
        return Ok(if catch_all {
            Segment::CatchAll(name.to_string())
        } else {
            Segment::Param(name.to_string())
        });
    }
    if part.contains('{') || part.contains('}') {
        return Err(TemplateError(format!(
            "\"{text}\": a parameter must be a whole segment, as in /chat/{{room}}"
        )));
    }
    Ok(Segment::Literal(part.to_string()))
}

/// Decodes `%XX` escapes once; `None` if the result is not UTF-8 or an
/// escape is malformed (`percent-encoding` alone would pass `%ZZ` through
/// as text; a path with a broken escape matches no route instead).
pub fn percent_decode(s: &str) -> Option<String> {
    if !escapes_well_formed(s) {
        return None;
    }
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(std::borrow::Cow::into_owned)
}

/// Whether every `%` is followed by two hexadecimal digits. (Not
/// `u8::from_str_radix`, which also accepts a sign: it read `%+F` as
/// `%0F`.)
fn escapes_well_formed(s: &str) -> bool {
    let bytes = s.as_bytes();
    bytes
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'%')
        .all(|(i, _)| {
            bytes
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
        })
}

/// The routes of one daemon generation; `T` is what a route leads to.
#[derive(Debug, Clone)]
pub struct RouteTable<T> {
    routes: Vec<(Template, T)>,
}

/// A route that matched a request path.
#[derive(Debug, Clone, Copy)]
pub struct Match<'a, T> {
    /// Index of the route in the table, in insertion order.
    pub index: usize,
    /// The template that matched.
    pub template: &'a Template,
    /// What the route leads to.
    pub target: &'a T,
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        RouteTable { routes: Vec::new() }
    }
}

impl<T> RouteTable<T> {
    /// Adds a route; fails if an existing one matches the same paths.
    pub fn add(&mut self, template: Template, target: T) -> Result<(), TemplateError> {
        if let Some((other, _)) = self.routes.iter().find(|(t, _)| t.same_shape(&template)) {
            let what = if other.as_str() == template.as_str() {
                "is a duplicate of"
            } else {
                "is ambiguous with"
            };
            return Err(TemplateError(format!(
                "\"{}\" {what} \"{}\": both match the same paths",
                template.as_str(),
                other.as_str()
            )));
        }
        self.routes.push((template, target));
        Ok(())
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether there are no routes.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The routes in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&Template, &T)> {
        self.routes.iter().map(|(t, x)| (t, x))
    }

    /// The most specific route matching `path`, with its parameters.
    pub fn find(&self, path: &str) -> Option<(Match<'_, T>, Params)> {
        let mut best: Option<(usize, Params)> = None;
        for (i, (template, _)) in self.routes.iter().enumerate() {
            let Some(params) = template.matches(path) else {
                continue;
            };
            let better = match &best {
                None => true,
                Some((j, _)) => template.more_specific_than(&self.routes[*j].0),
            };
            if better {
                best = Some((i, params));
            }
        }
        best.map(|(index, params)| {
            let (template, target) = &self.routes[index];
            (
                Match {
                    index,
                    template,
                    target,
                },
                params,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(paths: &[&str]) -> RouteTable<usize> {
        let mut t = RouteTable::default();
        for (i, p) in paths.iter().enumerate() {
            t.add(Template::parse(p).unwrap(), i).unwrap();
        }
        t
    }

    #[test]
    fn literal_and_params() {
        let t = table(&[
            "/echo",
            "/chat/{room}",
            "/notifications/{entity}/{context}/{token}",
        ]);
        assert_eq!(*t.find("/echo").unwrap().0.target, 0);
        assert!(t.find("/echo/x").is_none());
        let (m, p) = t.find("/chat/lobby").unwrap();
        assert_eq!(*m.target, 1);
        assert_eq!(p, vec![("room".into(), "lobby".into())]);
        let (_, p) = t.find("/notifications/messanger/vpn/abc").unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[2], ("token".into(), "abc".into()));
        assert!(t.find("/chat/").is_none());
        assert!(t.find("/chat").is_none());
    }

    #[test]
    fn literal_beats_param_beats_catch_all() {
        let t = table(&["/files/{*rest}", "/files/{name}", "/files/readme"]);
        assert_eq!(*t.find("/files/readme").unwrap().0.target, 2);
        assert_eq!(*t.find("/files/other").unwrap().0.target, 1);
        let (m, p) = t.find("/files/a/b/c").unwrap();
        assert_eq!(*m.target, 0);
        assert_eq!(p, vec![("rest".into(), "a/b/c".into())]);
    }

    #[test]
    fn percent_encoded_segments_are_decoded_once() {
        let t = table(&["/chat/{room}"]);
        let (_, p) = t.find("/chat/caf%C3%A9%2520").unwrap();
        assert_eq!(p[0].1, "café%20");
        assert!(t.find("/chat/%ZZ").is_none());
    }

    /// Found by `cargo fuzz run request_head`: `%` must be followed by two
    /// hex digits, not a sign and one digit.
    #[test]
    fn percent_escapes_need_two_hex_digits() {
        assert_eq!(percent_decode("a%+Fb"), None);
        assert_eq!(percent_decode("%-0"), None);
        assert_eq!(percent_decode("%2"), None);
        assert_eq!(percent_decode("%2f%2F"), Some("//".into()));
        let t = table(&["/files/{*rest}"]);
        assert!(t.find("/files/a/b2%+F").is_none());
    }

    /// The matcher as first written (the path split into a `Vec` of
    /// segments), as the reference for the one that walks the path.
    fn reference_matches(t: &Template, path: &str) -> Option<Params> {
        let rest = path.strip_prefix('/')?;
        let parts: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        let mut params = Vec::new();
        for (i, seg) in t.segments.iter().enumerate() {
            match seg {
                Segment::CatchAll(name) => {
                    let remainder = parts.get(i..).map(|p| p.join("/")).unwrap_or_default();
                    params.push((name.clone(), percent_decode(&remainder)?));
                    return Some(params);
                }
                Segment::Literal(lit) => {
                    if parts.get(i) != Some(&lit.as_str()) {
                        return None;
                    }
                }
                Segment::Param(name) => {
                    let part = parts.get(i).filter(|p| !p.is_empty())?;
                    params.push((name.clone(), percent_decode(part)?));
                }
            }
        }
        (parts.len() == t.segments.len()).then_some(params)
    }

    #[test]
    fn matching_agrees_with_the_reference_on_edge_paths() {
        let templates = [
            "/",
            "/a",
            "/a/",
            "/a/{x}",
            "/a/{x}/",
            "/{x}",
            "/{x}/{y}",
            "/a/{*r}",
            "/{*r}",
            "/a/b/{*r}",
            "/a/{x}/c",
        ];
        let paths = [
            "",
            "/",
            "//",
            "/a",
            "/a/",
            "/a//",
            "/a/b",
            "/a/b/",
            "/a/b/c",
            "/a/b/c/",
            "/a//c",
            "/b",
            "/a/%41",
            "/a/%ZZ",
            "/a/b/%2F/x",
            "a/b",
            "/a/b/c/d/e",
        ];
        for t in templates {
            let template = Template::parse(t).unwrap();
            for p in paths {
                assert_eq!(
                    template.matches(p),
                    reference_matches(&template, p),
                    "{t} on {p:?}"
                );
            }
        }
    }

    #[test]
    fn duplicates_and_ambiguities_are_rejected() {
        let mut t = table(&["/chat/{room}"]);
        let e = t
            .add(Template::parse("/chat/{name}").unwrap(), 9)
            .unwrap_err();
        assert!(e.0.contains("ambiguous"), "{e}");
        let e = t
            .add(Template::parse("/chat/{room}").unwrap(), 9)
            .unwrap_err();
        assert!(e.0.contains("duplicate"), "{e}");
    }

    #[test]
    fn bad_templates_are_rejected() {
        assert!(Template::parse("chat").is_err());
        assert!(Template::parse("/a/{*rest}/b").is_err());
        assert!(Template::parse("/a/x{y}").is_err());
        assert!(Template::parse("/a/{x}/{x}").is_err());
    }
}
