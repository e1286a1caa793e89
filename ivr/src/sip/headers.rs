//! The header list of a SIP message: names compared case-insensitively, compact forms expanded,
//! order kept (Via and Record-Route order carries meaning, RFC 3261 §7.3.1).

/// One header line, `name: value`, with the name in its canonical spelling when we know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// The canonical spelling of known header names, indexed by lower-case name; compact forms
/// (RFC 3261 §7.3.3 and the extensions that define one) map to the full name.
const KNOWN: &[(&str, &str)] = &[
    ("accept", "Accept"),
    ("accept-encoding", "Accept-Encoding"),
    ("accept-language", "Accept-Language"),
    ("alert-info", "Alert-Info"),
    ("allow", "Allow"),
    ("allow-events", "Allow-Events"),
    ("u", "Allow-Events"),
    ("authorization", "Authorization"),
    ("call-id", "Call-ID"),
    ("i", "Call-ID"),
    ("contact", "Contact"),
    ("m", "Contact"),
    ("content-disposition", "Content-Disposition"),
    ("content-encoding", "Content-Encoding"),
    ("e", "Content-Encoding"),
    ("content-length", "Content-Length"),
    ("l", "Content-Length"),
    ("content-type", "Content-Type"),
    ("c", "Content-Type"),
    ("cseq", "CSeq"),
    ("date", "Date"),
    ("event", "Event"),
    ("o", "Event"),
    ("expires", "Expires"),
    ("from", "From"),
    ("f", "From"),
    ("max-forwards", "Max-Forwards"),
    ("min-se", "Min-SE"),
    ("p-asserted-identity", "P-Asserted-Identity"),
    ("proxy-require", "Proxy-Require"),
    ("reason", "Reason"),
    ("record-route", "Record-Route"),
    ("refer-to", "Refer-To"),
    ("r", "Refer-To"),
    ("referred-by", "Referred-By"),
    ("b", "Referred-By"),
    ("require", "Require"),
    ("retry-after", "Retry-After"),
    ("route", "Route"),
    ("server", "Server"),
    ("session-expires", "Session-Expires"),
    ("x", "Session-Expires"),
    ("subject", "Subject"),
    ("s", "Subject"),
    ("subscription-state", "Subscription-State"),
    ("supported", "Supported"),
    ("k", "Supported"),
    ("timestamp", "Timestamp"),
    ("to", "To"),
    ("t", "To"),
    ("unsupported", "Unsupported"),
    ("user-agent", "User-Agent"),
    ("via", "Via"),
    ("v", "Via"),
    ("warning", "Warning"),
];

/// Headers whose grammar is a comma-separated list (`#element`), so that several values on one
/// line are the same as several lines (RFC 3261 §7.3.1). Others (From, To, Call-ID, CSeq, the
/// authentication headers, Date, User-Agent…) are never split.
const LIST_HEADERS: &[&str] = &[
    "Accept",
    "Accept-Encoding",
    "Accept-Language",
    "Allow",
    "Allow-Events",
    "Contact",
    "Content-Encoding",
    "Proxy-Require",
    "Record-Route",
    "Require",
    "Route",
    "Supported",
    "Unsupported",
    "Via",
];

/// The canonical name for `name`: compact forms expanded, known names in their usual case,
/// unknown names as written.
pub fn canonical_name(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    KNOWN.iter().find(|(k, _)| *k == lower).map(|(_, v)| (*v).to_owned()).unwrap_or_else(|| name.to_owned())
}

/// Whether values of the (canonical) header `name` may be split on commas.
pub fn is_list_header(name: &str) -> bool {
    LIST_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// Splits a header value on commas that are outside quoted strings and `<…>` URIs.
pub fn split_commas(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut in_quotes, mut in_angle, mut escaped) = (false, false, false);
    let mut start = 0;
    for (i, c) in value.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '<' if !in_quotes => in_angle = true,
            '>' if !in_quotes => in_angle = false,
            ',' if !in_quotes && !in_angle => {
                out.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(value[start..].trim());
    out.retain(|v| !v.is_empty());
    out
}

/// The headers of a message, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<Header>);

impl Headers {
    pub fn new() -> Self {
        Headers(Vec::new())
    }

    /// All header lines, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Header> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first value of `name` (any case, compact form allowed).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_all(name).next()
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> + 'a {
        let name = canonical_name(name);
        self.0.iter().filter(move |h| h.name.eq_ignore_ascii_case(&name)).map(|h| h.value.as_str())
    }

    /// Appends a header line. The name is canonicalised; the value is kept as given, except that
    /// CR and LF are replaced by spaces so a value can never inject a header line.
    pub fn push(&mut self, name: &str, value: impl Into<String>) {
        let value: String = value.into();
        let value = if value.contains(['\r', '\n']) { value.replace(['\r', '\n'], " ") } else { value };
        self.0.push(Header { name: canonical_name(name), value });
    }

    /// Removes every value of `name`.
    pub fn remove(&mut self, name: &str) {
        let name = canonical_name(name);
        self.0.retain(|h| !h.name.eq_ignore_ascii_case(&name));
    }

    /// Replaces the first value of `name` (appends if there is none), keeping the others.
    pub fn set_first(&mut self, name: &str, value: impl Into<String>) {
        let canonical = canonical_name(name);
        let mut tmp = Headers::new();
        tmp.push(name, value);
        match self.0.iter_mut().find(|h| h.name.eq_ignore_ascii_case(&canonical)) {
            Some(h) => *h = tmp.0.remove(0),
            None => self.0.append(&mut tmp.0),
        }
    }

    /// Replaces every value of `name` by one value, placed where the first one was (or at the end).
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let canonical = canonical_name(name);
        match self.0.iter().position(|h| h.name.eq_ignore_ascii_case(&canonical)) {
            Some(pos) => {
                self.remove(name);
                let mut tmp = Headers::new();
                tmp.push(name, value);
                self.0.splice(pos..pos, tmp.0);
            }
            None => self.push(name, value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_and_case_insensitive_lookup() {
        let mut h = Headers::new();
        h.push("i", "abc");
        h.push("VIA", "SIP/2.0/UDP a");
        h.push("X-Custom", "1");
        assert_eq!(h.get("Call-ID"), Some("abc"));
        assert_eq!(h.get("call-id"), Some("abc"));
        assert_eq!(h.get("v"), Some("SIP/2.0/UDP a"));
        assert_eq!(h.get("x-custom"), Some("1"));
        h.set("Call-ID", "new");
        assert_eq!(h.iter().next().map(|x| x.value.as_str()), Some("new"));
    }

    #[test]
    fn comma_split_respects_quotes_and_brackets() {
        assert_eq!(
            split_commas(r#""Rossi, Mario" <sip:a@b;x=1,2>;q=1, <sip:c@d>"#),
            vec![r#""Rossi, Mario" <sip:a@b;x=1,2>;q=1"#, "<sip:c@d>"]
        );
        assert_eq!(split_commas("INVITE, ACK,BYE"), vec!["INVITE", "ACK", "BYE"]);
        assert_eq!(split_commas(" , "), Vec::<&str>::new());
    }

    #[test]
    fn values_cannot_inject_lines() {
        let mut h = Headers::new();
        h.push("Subject", "a\r\nVia: evil");
        assert_eq!(h.get("Subject"), Some("a  Via: evil"));
    }
}
