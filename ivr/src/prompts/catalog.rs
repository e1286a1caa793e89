//! The prompt texts: every `.ftl` file of `prompts/<lang>/` loaded into one fluent bundle per
//! language, with the file and line of each message kept so that every later error (a formatting
//! failure, a duplicate, a missing translation) can point at the source.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentError, FluentResource, FluentValue};
use fluent_syntax::ast;
use unic_langid::LanguageIdentifier;

use super::PromptError;
use crate::domain::{Language, PromptId};

/// A value given to a message's `{ $variable }`.
#[derive(Debug, Clone, PartialEq)]
pub enum PromptArg {
    Text(String),
    Number(f64),
}

impl From<&str> for PromptArg {
    fn from(s: &str) -> Self {
        PromptArg::Text(s.to_owned())
    }
}

impl From<String> for PromptArg {
    fn from(s: String) -> Self {
        PromptArg::Text(s)
    }
}

impl From<i64> for PromptArg {
    fn from(n: i64) -> Self {
        // Queue positions, minutes, counts: far below 2^53, so exact as f64.
        PromptArg::Number(n as f64)
    }
}

impl From<i32> for PromptArg {
    fn from(n: i32) -> Self {
        PromptArg::Number(f64::from(n))
    }
}

impl From<u32> for PromptArg {
    fn from(n: u32) -> Self {
        PromptArg::Number(f64::from(n))
    }
}

impl From<usize> for PromptArg {
    fn from(n: usize) -> Self {
        PromptArg::Number(n as f64)
    }
}

impl From<f64> for PromptArg {
    fn from(n: f64) -> Self {
        PromptArg::Number(n)
    }
}

/// Where a message was defined, and whether it needs data to be spoken.
#[derive(Debug, Clone)]
struct MessageInfo {
    path: PathBuf,
    line: usize,
    has_variables: bool,
}

struct LangCatalog {
    bundle: FluentBundle<FluentResource>,
    messages: BTreeMap<PromptId, MessageInfo>,
}

/// All prompt texts of the configured languages. `Send + Sync`: load once, share behind an `Arc`.
pub struct Catalog {
    langs: HashMap<Language, LangCatalog>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Catalog");
        for lang in self.languages() {
            if let Some(lc) = self.langs.get(&lang) {
                d.field(lang.as_str(), &lc.messages.len());
            }
        }
        d.finish()
    }
}

impl Catalog {
    /// Reads every `*.ftl` file of `dir/<tag>/` for each configured language that has a folder
    /// there (files in name order); at least one must. Fails on the first syntax error, invalid
    /// or duplicate id, or message without a value, naming file and line. Whether every language
    /// the flow names has all its prompts is the flow's check ([`crate::flow::Flow::from_toml`]).
    pub fn load(dir: &Path) -> Result<Catalog, PromptError> {
        let present: Vec<Language> = Language::all().into_iter().filter(|l| dir.join(l.as_str()).is_dir()).collect();
        if present.is_empty() {
            return Err(PromptError::MissingLanguageDir { path: dir.join(Language::It.as_str()) });
        }
        Catalog::load_languages(dir, &present)
    }

    /// Reads the texts of exactly these languages; a language without a folder is an error.
    pub fn load_languages(dir: &Path, languages: &[Language]) -> Result<Catalog, PromptError> {
        let mut langs = HashMap::new();
        for &lang in languages {
            langs.insert(lang, build_language(lang, read_language(dir, lang)?)?);
        }
        Ok(Catalog { langs })
    }

    /// The languages of the catalog, in menu order.
    pub fn languages(&self) -> Vec<Language> {
        let mut out: Vec<Language> = self.langs.keys().copied().collect();
        out.sort();
        out
    }

    /// Builds the catalog from texts held in memory, e.g. a copy of `prompts/` compiled into a
    /// program: `(language, path, contents)`, where the path only names the text in messages.
    /// A language's texts are read in path order, like a folder's files, and checked as
    /// [`Catalog::load`] checks them; a shipped language without texts has no messages.
    pub fn from_texts(texts: impl IntoIterator<Item = (Language, PathBuf, Vec<u8>)>) -> Result<Catalog, PromptError> {
        let mut by_lang: HashMap<Language, Vec<(PathBuf, Vec<u8>)>> = HashMap::new();
        for (lang, path, bytes) in texts {
            by_lang.entry(lang).or_default().push((path, bytes));
        }
        let mut langs = HashMap::new();
        let mut all: Vec<Language> = Language::shipped().to_vec();
        all.extend(by_lang.keys().copied().filter(|l| !Language::shipped().contains(l)));
        for lang in all {
            let mut files = by_lang.remove(&lang).unwrap_or_default();
            files.sort_by(|a, b| a.0.cmp(&b.0));
            langs.insert(lang, build_language(lang, files)?);
        }
        Ok(Catalog { langs })
    }

    fn lang(&self, lang: Language) -> Option<&LangCatalog> {
        self.langs.get(&lang)
    }

    /// Formats a message with its arguments. Any resolver error (unknown variable, unknown
    /// referenced message or term) is an error, never silently spoken text.
    pub fn format(&self, lang: Language, id: &PromptId, args: &[(&str, PromptArg)]) -> Result<String, PromptError> {
        let unknown = || PromptError::UnknownMessage { lang, id: id.clone() };
        let lc = self.lang(lang).ok_or_else(unknown)?;
        let info = lc.messages.get(id).ok_or_else(unknown)?;
        let pattern = lc.bundle.get_message(id.as_str()).and_then(|m| m.value()).ok_or_else(unknown)?;
        let mut fargs = FluentArgs::new();
        for (name, value) in args {
            match value {
                PromptArg::Text(s) => fargs.set(*name, FluentValue::from(s.as_str())),
                PromptArg::Number(n) => fargs.set(*name, FluentValue::from(*n)),
            }
        }
        let mut errors = Vec::new();
        let text = lc.bundle.format_pattern(pattern, Some(&fargs), &mut errors);
        if errors.is_empty() {
            Ok(text.into_owned())
        } else {
            let mut msg = String::new();
            for (i, e) in errors.iter().enumerate() {
                if i > 0 {
                    msg.push_str("; ");
                }
                let _ = write!(msg, "{e}");
            }
            Err(PromptError::Format { lang, id: id.clone(), path: info.path.clone(), line: info.line, errors: msg })
        }
    }

    /// The message ids of one language.
    pub fn ids(&self, lang: Language) -> BTreeSet<PromptId> {
        self.lang(lang).map(|lc| lc.messages.keys().cloned().collect()).unwrap_or_default()
    }

    /// Every (language, id) such that `id` exists in some other language but not in this one.
    pub fn missing(&self) -> Vec<(Language, PromptId)> {
        let all: BTreeSet<PromptId> = self.langs.keys().flat_map(|&l| self.ids(l)).collect();
        let mut out = Vec::new();
        for lang in self.languages() {
            let have = self.ids(lang);
            out.extend(all.difference(&have).map(|id| (lang, id.clone())));
        }
        out
    }

    /// Whether the message (or a message it references) has a `{ $variable }`: such a message
    /// cannot be pre-rendered and is synthesised on demand. `false` for an unknown message.
    pub fn has_variables(&self, lang: Language, id: &PromptId) -> bool {
        self.lang(lang).and_then(|lc| lc.messages.get(id)).is_some_and(|m| m.has_variables)
    }

    /// The file and line where a message is defined.
    pub fn source(&self, lang: Language, id: &PromptId) -> Option<(&Path, usize)> {
        self.lang(lang).and_then(|lc| lc.messages.get(id)).map(|m| (m.path.as_path(), m.line))
    }
}

/// The `*.ftl` files of `dir/<lang>/`, in name order, with their bytes.
fn read_language(dir: &Path, lang: Language) -> Result<Vec<(PathBuf, Vec<u8>)>, PromptError> {
    let lang_dir = dir.join(lang.as_str());
    if !lang_dir.is_dir() {
        return Err(PromptError::MissingLanguageDir { path: lang_dir });
    }
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(&lang_dir).map_err(PromptError::io(&lang_dir))? {
        let path = entry.map_err(PromptError::io(&lang_dir))?.path();
        if path.extension().is_some_and(|e| e == "ftl") && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).map_err(PromptError::io(&path))?;
            Ok((path, bytes))
        })
        .collect()
}

/// One language's bundle from its texts, in the order given.
fn build_language(lang: Language, files: Vec<(PathBuf, Vec<u8>)>) -> Result<LangCatalog, PromptError> {
    // The primary subtag decides the plural rules (Russian and Ukrainian `few`/`many`, Arabic's
    // six forms, Chinese's one).
    let locale: LanguageIdentifier = lang.as_str().parse().unwrap_or_else(|_| LanguageIdentifier::default());
    let mut bundle = FluentBundle::new_concurrent(vec![locale]);
    bundle.set_use_isolating(false);
    if lang.info().decimal_comma {
        bundle.set_formatter(Some(decimal_comma));
    }

    let mut messages: BTreeMap<PromptId, MessageInfo> = BTreeMap::new();
    for (path, bytes) in files {
        let mut source = String::from_utf8(bytes).map_err(|_| PromptError::NotUtf8 { path: path.clone() })?;
        if source.starts_with('\u{feff}') {
            source.drain(..'\u{feff}'.len_utf8());
        }
        let entry_lines = entry_lines(&source);
        let resource = match FluentResource::try_new(source.clone()) {
            Ok(r) => r,
            Err((_, errors)) => {
                let first = errors.iter().min_by_key(|e| e.pos.start);
                let (offset, message) = first
                    .map(|e| {
                        let entry_start = e.slice.as_ref().map_or(0, |s| s.start);
                        (error_offset(&source, e.pos.start, entry_start), e.to_string())
                    })
                    .unwrap_or((0, "unknown error".to_owned()));
                let (line, column) = line_column(&source, offset);
                return Err(PromptError::Parse { path, line, column, message });
            }
        };
        // Message ids in the order the parser saw them, matched with their lines in the text.
        let mut occurrences: HashMap<&str, usize> = HashMap::new();
        for entry in resource.entries() {
            let ast::Entry::Message(msg) = entry else {
                continue;
            };
            let name = msg.id.name;
            let nth = occurrences.entry(name).or_insert(0);
            let line = entry_lines.iter().filter(|(id, _)| *id == name).nth(*nth).map(|(_, l)| *l).unwrap_or(1);
            *nth += 1;
            let id = PromptId::parse(name).map_err(|_| PromptError::InvalidId {
                id: name.to_owned(),
                path: path.clone(),
                line,
            })?;
            if msg.value.is_none() {
                return Err(PromptError::NoValue { id, path, line });
            }
            if let Some(first) = messages.get(&id) {
                return Err(PromptError::DuplicateId {
                    id,
                    path,
                    line,
                    first_path: first.path.clone(),
                    first_line: first.line,
                });
            }
            messages.insert(id, MessageInfo { path: path.clone(), line, has_variables: false });
        }
        if let Err(errors) = bundle.add_resource(resource) {
            // Duplicate messages were caught above; what is left is a duplicate term.
            let message = errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ");
            let line = errors
                .iter()
                .find_map(|e| match e {
                    FluentError::Overriding { id, .. } => source
                        .lines()
                        .position(|l| {
                            l.strip_prefix('-')
                                .and_then(|r| r.strip_prefix(id.as_str()))
                                .is_some_and(|r| r.trim_start().starts_with('='))
                        })
                        .map(|i| i + 1),
                    _ => None,
                })
                .unwrap_or(1);
            return Err(PromptError::Parse { path, line, column: 1, message });
        }
    }

    for (id, info) in messages.iter_mut() {
        info.has_variables = bundle
            .get_message(id.as_str())
            .and_then(|m| m.value())
            .is_some_and(|p| pattern_has_variables(&bundle, p, 0));
    }
    Ok(LangCatalog { bundle, messages })
}

/// Formats numbers with a decimal comma (the languages configured with `decimal_comma`), so the speech engine reads
/// "2,5" as "two point five" in the caller's language rather than as two numbers.
fn decimal_comma<M>(value: &FluentValue, _: &M) -> Option<String> {
    match value {
        FluentValue::Number(n) => Some(n.as_string().replace('.', ",")),
        _ => None,
    }
}

/// `(id, 1-based line)` of each line that starts a message (`id =` at column 0), in file order.
fn entry_lines(source: &str) -> Vec<(&str, usize)> {
    let mut out = Vec::new();
    for (i, line) in source.lines().enumerate() {
        if !line.starts_with(|c: char| c.is_ascii_alphabetic()) {
            continue;
        }
        let end = line.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')).unwrap_or(line.len());
        if line[end..].trim_start().starts_with('=') {
            out.push((&line[..end], i + 1));
        }
    }
    out
}

/// Where to point at a parser error. The parser reports the place where it gave up; when that is
/// the start of a line inside the broken entry, the mistake is the unfinished line before it (an
/// unclosed `{`, a select without its `}`), so point just after that line's last character.
fn error_offset(source: &str, offset: usize, entry_start: usize) -> usize {
    let offset = offset.min(source.len());
    let at_line_start = offset > 0 && source.as_bytes().get(offset - 1) == Some(&b'\n');
    if !at_line_start || offset <= entry_start {
        return offset;
    }
    let start = entry_start.min(offset);
    source.get(start..offset).map_or(offset, |before| start + before.trim_end().len())
}

/// The 1-based line and column (in characters) of a byte offset.
fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Deep enough for any real prompt; guards against reference cycles (`a = { b }`, `b = { a }`).
const MAX_REFERENCE_DEPTH: usize = 16;

fn pattern_has_variables(bundle: &FluentBundle<FluentResource>, pattern: &ast::Pattern<&str>, depth: usize) -> bool {
    if depth > MAX_REFERENCE_DEPTH {
        return false;
    }
    pattern.elements.iter().any(|el| match el {
        ast::PatternElement::TextElement { .. } => false,
        ast::PatternElement::Placeable { expression } => expression_has_variables(bundle, expression, depth),
    })
}

fn expression_has_variables(bundle: &FluentBundle<FluentResource>, expr: &ast::Expression<&str>, depth: usize) -> bool {
    match expr {
        ast::Expression::Select { selector, variants } => {
            inline_has_variables(bundle, selector, depth)
                || variants.iter().any(|v| pattern_has_variables(bundle, &v.value, depth))
        }
        ast::Expression::Inline(inline) => inline_has_variables(bundle, inline, depth),
    }
}

fn inline_has_variables(
    bundle: &FluentBundle<FluentResource>,
    inline: &ast::InlineExpression<&str>,
    depth: usize,
) -> bool {
    match inline {
        ast::InlineExpression::VariableReference { .. } => true,
        ast::InlineExpression::StringLiteral { .. } | ast::InlineExpression::NumberLiteral { .. } => false,
        ast::InlineExpression::FunctionReference { arguments, .. } => args_have_variables(bundle, arguments, depth),
        ast::InlineExpression::MessageReference { id, attribute } => {
            let Some(msg) = bundle.get_message(id.name) else {
                return false;
            };
            let pattern = match attribute {
                Some(attr) => msg.get_attribute(attr.name).map(|a| a.value()),
                None => msg.value(),
            };
            pattern.is_some_and(|p| pattern_has_variables(bundle, p, depth + 1))
        }
        // A term's variables are its call arguments, not the caller's data.
        ast::InlineExpression::TermReference { arguments, .. } => {
            arguments.as_ref().is_some_and(|a| args_have_variables(bundle, a, depth))
        }
        ast::InlineExpression::Placeable { expression } => expression_has_variables(bundle, expression, depth),
    }
}

fn args_have_variables(bundle: &FluentBundle<FluentResource>, args: &ast::CallArguments<&str>, depth: usize) -> bool {
    args.positional.iter().any(|a| inline_has_variables(bundle, a, depth))
        || args.named.iter().any(|a| inline_has_variables(bundle, &a.value, depth))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_of_offsets() {
        let s = "a = 1\nb = è2\nc";
        assert_eq!(line_column(s, 0), (1, 1));
        assert_eq!(line_column(s, 6), (2, 1));
        assert_eq!(line_column(s, 12), (2, 6));
        assert_eq!(line_column(s, 999), (3, 2));
    }

    #[test]
    fn entry_lines_find_messages_only() {
        let s = "# c\nhello = x\n    .attr = y\n-term = t\nmulti =\n    line\nsel = { $n ->\n   *[one] a\n}\n";
        assert_eq!(entry_lines(s), vec![("hello", 2), ("multi", 5), ("sel", 7)]);
    }
}
