//! One request's URL as text, with where its parts are. A job's URLs are made from templates
//! parsed once at start-up; making one per request is then a copy of the template's text and
//! an append, where `Url::set_path` and `query_pairs_mut` parse the URL again each time (that
//! was an eighth of the instructions of a trivial job).

use std::fmt;
use std::ops::Range;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Url;

/// What `application/x-www-form-urlencoded` leaves as it is, besides letters and digits (a
/// space becomes `+`): the bytes `url`'s `form_urlencoded::byte_serialize` keeps.
const FORM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'*')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_');

/// A URL written out as `Url` writes it, and the positions of its scheme, host, path, query
/// and fragment in that text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    text: String,
    scheme_end: usize,
    /// Empty for a URL without a host.
    host: Range<usize>,
    port: Option<u16>,
    /// Where the path starts.
    path: usize,
    /// Where the `?` is, when there is a query.
    query: Option<usize>,
    /// Where the `#` is, when there is a fragment (never sent).
    fragment: Option<usize>,
}

impl Target {
    pub(crate) fn new(url: &Url) -> Target {
        // `Url` writes `scheme:[//[userinfo@]host[:port]]path[?query][#fragment]`: the parts
        // are found from the end.
        let text = url.as_str().to_owned();
        let fragment = url.fragment().map(|f| text.len() - f.len() - 1);
        let query_end = fragment.unwrap_or(text.len());
        let query = url.query().map(|q| query_end - q.len() - 1);
        let path = query.unwrap_or(query_end) - url.path().len();
        let port = url.port();
        let host_end = path - port.map_or(0, |p| 1 + p.to_string().len());
        let host = host_end - url.host_str().map_or(0, str::len)..host_end;
        Target {
            scheme_end: url.scheme().len(),
            host,
            port,
            path,
            query,
            fragment,
            text,
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    /// The scheme, lowercase (`http`, `https`).
    pub(crate) fn scheme(&self) -> &str {
        &self.text[..self.scheme_end]
    }

    /// The host as written in the URL (an IPv6 address in brackets).
    pub(crate) fn host(&self) -> Option<&str> {
        Some(&self.text[self.host.clone()]).filter(|h| !h.is_empty())
    }

    /// The port the URL names, if it names one other than its scheme's default.
    pub(crate) fn port(&self) -> Option<u16> {
        self.port
    }

    pub(crate) fn path(&self) -> &str {
        &self.text[self.path..self.query.or(self.fragment).unwrap_or(self.text.len())]
    }

    #[cfg(test)]
    pub(crate) fn query(&self) -> Option<&str> {
        let start = self.query? + 1;
        Some(&self.text[start..self.fragment.unwrap_or(self.text.len())])
    }

    /// What goes on the request line: the path and the query, without the fragment.
    pub(crate) fn path_and_query(&self) -> &str {
        &self.text[self.path..self.fragment.unwrap_or(self.text.len())]
    }

    /// The same URL as a `Url` (for reqwest, behind a proxy).
    pub(crate) fn to_url(&self) -> Result<Url, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Url::parse(&self.text)?)
    }

    /// This URL with every `$ID` in its path and query replaced by `id`, which must already be
    /// percent-encoded for both (`encode_component` does that).
    pub(crate) fn with_id(&self, id: &str) -> Target {
        let end = self.fragment.unwrap_or(self.text.len());
        if !self.text[self.path..end].contains("$ID") {
            return self.clone();
        }
        let mut text = String::with_capacity(self.text.len() + id.len());
        text.push_str(&self.text[..self.path]);
        let path_end = self.query.unwrap_or(end);
        push_with_id(&mut text, &self.text[self.path..path_end], id);
        let query = self.query.map(|_| {
            let at = text.len();
            push_with_id(&mut text, &self.text[path_end..end], id);
            at
        });
        let fragment = self.fragment.map(|f| {
            let at = text.len();
            text.push_str(&self.text[f..]);
            at
        });
        Target {
            text,
            scheme_end: self.scheme_end,
            host: self.host.clone(),
            port: self.port,
            path: self.path,
            query,
            fragment,
        }
    }

    /// Append `key=value` to the query, form-encoded as `Url::query_pairs_mut` encodes it (a
    /// `?` first when there is no query yet).
    pub(crate) fn append_pair(&mut self, key: &str, value: &str) {
        let fragment = self.fragment.map(|f| self.text.split_off(f));
        let start = match self.query {
            Some(q) => q + 1,
            None => {
                self.query = Some(self.text.len());
                self.text.push('?');
                self.text.len()
            }
        };
        if self.text.len() > start {
            self.text.push('&');
        }
        form_encode(&mut self.text, key);
        self.text.push('=');
        form_encode(&mut self.text, value);
        if let Some(fragment) = fragment {
            self.fragment = Some(self.text.len());
            self.text.push_str(&fragment);
        }
    }
}

/// `part` with every `$ID` replaced by `id`, pushed onto `out` (`str::replace` without its
/// string of its own).
fn push_with_id(out: &mut String, part: &str, id: &str) {
    let mut pieces = part.split("$ID");
    out.push_str(pieces.next().unwrap_or_default());
    for piece in pieces {
        out.push_str(id);
        out.push_str(piece);
    }
}

fn form_encode(out: &mut String, text: &str) {
    for (i, part) in text.split(' ').enumerate() {
        if i > 0 {
            out.push('+');
        }
        out.extend(utf8_percent_encode(part, FORM));
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(s: &str) -> Target {
        Target::new(&Url::parse(s).unwrap())
    }

    /// Every part read back as `Url` reads it.
    fn same_as_url(t: &Target) {
        let url = t.to_url().unwrap();
        assert_eq!(t.as_str(), url.as_str());
        assert_eq!(t.scheme(), url.scheme());
        assert_eq!(t.host(), url.host_str());
        assert_eq!(t.port(), url.port());
        assert_eq!(t.path(), url.path());
        assert_eq!(t.query(), url.query());
        let fragment = url.fragment().map_or(0, |f| f.len() + 1);
        assert_eq!(
            t.path_and_query(),
            &url.as_str()[t.path..url.as_str().len() - fragment]
        );
        assert!(url.as_str()[..t.path].ends_with(&format!(
            "{}{}",
            url.host_str().unwrap_or_default(),
            url.port().map(|p| format!(":{p}")).unwrap_or_default()
        )));
    }

    #[test]
    fn parts_are_where_url_puts_them() {
        for s in [
            "http://h/v2/ep/job-done/w/$ID?gpu=x",
            "https://user:pw@H.example:8443/a/$ID",
            "http://[::1]:8080/p?q=$ID#frag",
            "http://127.0.0.1/",
            "http://h/p?#f",
            "unix:/run/sock",
        ] {
            same_as_url(&target(s));
        }
    }

    #[test]
    fn the_id_goes_in_path_and_query_not_the_fragment() {
        let t = target("http://[::1]:8080/a/$ID/b?job=$ID&x=1#$ID").with_id("j%201");
        assert_eq!(t.as_str(), "http://[::1]:8080/a/j%201/b?job=j%201&x=1#$ID");
        same_as_url(&t);
    }

    #[test]
    fn pairs_append_as_query_pairs_mut_appends_them() {
        for s in [
            "http://h/p",
            "http://h/p?a=1",
            "http://h/p?",
            "http://h/p?a=1#f",
            "http://h/p#f",
        ] {
            let mut t = target(s);
            t.append_pair("job_id", "c 3,é/x*~!'()+&=");
            t.append_pair("n", "1");
            let mut url = Url::parse(s).unwrap();
            url.query_pairs_mut()
                .append_pair("job_id", "c 3,é/x*~!'()+&=")
                .append_pair("n", "1");
            assert_eq!(t.as_str(), url.as_str(), "{s}");
            same_as_url(&t);
        }
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(crate::props::config())]

        /// Whatever the id, the parameters and the template's shape, the text is what `Url`
        /// makes of the same edits (`set_path`, `set_query`, `query_pairs_mut`), which is what
        /// the worker sent before `Target`.
        #[test]
        fn the_same_url_as_url_edits_make_it(
            id in any::<String>(),
            pairs in prop::collection::vec((any::<String>(), any::<String>()), 0..4),
            query in prop::option::of("[a-z0-9=&$ID]{0,12}"),
            fragment in prop::option::of("[a-z]{0,4}"),
            port in prop::option::of(1u16..),
        ) {
            let template = format!(
                "http://h.example{}/v2/ep/job-done/w/$ID{}{}",
                port.map(|p| format!(":{p}")).unwrap_or_default(),
                query.as_ref().map(|q| format!("?{q}")).unwrap_or_default(),
                fragment.as_ref().map(|f| format!("#{f}")).unwrap_or_default(),
            );
            // An id of only dots is a dot segment, which `set_path` removes with the id (the
            // URL lost its job id); sent as it is, it stays. Platform ids never are one.
            prop_assume!(id != "." && id != "..");
            let url = Url::parse(&template).unwrap();
            let encoded = crate::wire::encode_component(&id);

            let mut expected = url.clone();
            expected.set_path(&url.path().replace("$ID", &encoded));
            if let Some(q) = url.query().filter(|q| q.contains("$ID")) {
                expected.set_query(Some(&q.replace("$ID", &encoded)));
            }
            let mut target = Target::new(&url).with_id(&encoded);
            for (key, value) in &pairs {
                expected.query_pairs_mut().append_pair(key, value);
                target.append_pair(key, value);
            }
            prop_assert_eq!(target.as_str(), expected.as_str());
            same_as_url(&target);
        }
    }
}
