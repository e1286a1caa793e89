//! Loading what callers hear: the menus (`flow_file`, or the built-in default flow when the file
//! is absent) checked against the prompt texts (`prompts_dir`), and the texts themselves.

pub mod http;

pub use http::{routes, wav_response, PromptsState};

use crate::config::Settings;
use anyhow::Context;
use ivr::domain::{Language, PromptId};
use ivr::flow::Flow;
use ivr::prompts::Catalog;
use std::collections::BTreeSet;
use std::sync::Arc;

/// The flow and the prompt catalog the server runs with.
#[derive(Clone)]
pub struct Voice {
    pub flow: Arc<Flow>,
    pub catalog: Arc<Catalog>,
}

/// Where the running flow came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowSource {
    File(std::path::PathBuf),
    BuiltIn,
}

/// Loads and cross-checks the catalog and the flow; errors name the file, node and reason.
pub fn load(settings: &Settings) -> anyhow::Result<(Voice, FlowSource)> {
    let catalog = Catalog::load(&settings.prompts_dir)
        .with_context(|| format!("cannot load the prompt texts from {}", settings.prompts_dir.display()))?;
    let known = known_prompts(&catalog);
    let (flow, source) = match std::fs::read_to_string(&settings.flow_file) {
        Ok(src) => {
            let file = settings.flow_file.display().to_string();
            (Flow::from_toml(&src, &file, &known)?, FlowSource::File(settings.flow_file.clone()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // The built-in flow is checked against the embedded texts; make sure the catalog on
            // disk has them too, or callers would hear silence.
            let flow = Flow::default_flow()?;
            let missing: Vec<&str> =
                flow.prompt_ids().iter().filter(|id| !known.contains(*id)).map(|id| id.as_str()).collect();
            anyhow::ensure!(
                missing.is_empty(),
                "{}: the built-in flow needs prompts that are missing in some language: {}",
                settings.prompts_dir.display(),
                missing.join(", ")
            );
            (flow, FlowSource::BuiltIn)
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", settings.flow_file.display())),
    };
    Ok((Voice { flow: Arc::new(flow), catalog: Arc::new(catalog) }, source))
}

/// Prompt ids present in every language.
fn known_prompts(catalog: &Catalog) -> BTreeSet<PromptId> {
    let mut langs = Language::ALL.iter();
    let mut common = langs.next().map(|l| catalog.ids(*l)).unwrap_or_default();
    for lang in langs {
        let ids = catalog.ids(*lang);
        common.retain(|id| ids.contains(id));
    }
    common
}
