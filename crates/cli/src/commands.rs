//! The subcommands: read inputs, run the pure stages, print, and return an [`Outcome`].
//!
//! Every command that works on VMs goes through [`check_file`]: parse the documents, note
//! unsupported kinds on stderr, apply KubeVirt's defaults, validate, print warnings (all
//! located `FILE:LINE:COLUMN`, in file order). The planner and the annotation writer only
//! ever see defaulted objects that validated.

use std::collections::BTreeMap;

use anyhow::Context;
use ipnet::IpNet;
use netbind_plan::render::{self, picture::picture_all};
use netbind_plan::{NetworkPlan, PodView};
use netbind_spec::validate::{self, Report};
use netbind_spec::{ClusterConfig, Document, VmObject, defaults, multus};
use serde::Serialize;

use crate::input::{self, Manifest, display_name};
use crate::output::{self, Record};
use crate::{
    AnnotationsArgs, MachineOutput, Outcome, PlanArgs, PlanOutput, ValidateArgs, ValidateOutput,
};

/// A defaulted object and what validation said about it.
pub(crate) struct Checked {
    pub(crate) obj: VmObject,
    report: Report,
    /// Index of the object's document in [`CheckedFile::manifest`].
    doc: usize,
}

/// Every VM/VMI of one file, checked, with the file for pointing into it.
pub(crate) struct CheckedFile {
    manifest: Manifest,
    pub(crate) objects: Vec<Checked>,
}

impl CheckedFile {
    fn source<'a>(&'a self, c: &Checked) -> Option<output::Source<'a>> {
        let parsed = self.manifest.docs.get(c.doc)?;
        Some(self.manifest.source(parsed))
    }

    /// The human violations of `c`, located.
    fn violations(&self, c: &Checked) -> String {
        let object = c.obj.display_name();
        match self.source(c) {
            Some(src) => src.violations(&object, &c.report.violations),
            None => String::new(),
        }
    }

    /// Human violations of every invalid object, for stderr; none when all are valid.
    fn invalid_report(&self) -> Option<String> {
        let text: String = self
            .objects
            .iter()
            .filter(|c| !c.report.is_valid())
            .map(|c| self.violations(c))
            .collect();
        (!text.is_empty()).then_some(text)
    }
}

/// Parses one manifest file and validates every VM/VMI in it; unknown fields and
/// validation warnings go to stderr, as do notes on unsupported kinds. Errors: input that
/// does not read, parse or type, and a file with no VM at all.
pub(crate) fn check_file(
    path: &str,
    cluster: &ClusterConfig,
    pod_addresses: Option<&[IpNet]>,
) -> Result<CheckedFile, input::InputError> {
    let manifest = input::manifests(path)?;
    input::note_unsupported(&manifest)?;
    let mut objects = Vec::new();
    for (doc, parsed) in manifest.docs.iter().enumerate() {
        let Document::Vm(obj) = &parsed.doc else {
            continue;
        };
        let obj = defaults::apply(obj, cluster);
        let report = validate::validate(&obj, cluster, pod_addresses);
        output::stderr(&manifest.source(parsed).warnings(&parsed.unknown, &report));
        objects.push(Checked { obj, report, doc });
    }
    Ok(CheckedFile { manifest, objects })
}

pub fn validate(args: &ValidateArgs) -> anyhow::Result<Outcome> {
    let cluster = input::cluster_config(args.cluster_config.as_deref())?;
    let pod_addresses = match &args.pod_view {
        Some(path) => Some(input::pod_view_file(path)?.addresses()),
        None => None,
    };
    let mut outcome = Outcome::Ok;
    let mut records = Vec::new();
    for path in &args.files {
        let checked = match check_file(path, &cluster, pod_addresses.as_deref()) {
            Ok(c) => c,
            Err(e) => {
                output::stderr(&format!("{e}\n"));
                // A file with nothing to check was read; it is wrong, not unreadable.
                let this = match e {
                    input::InputError::NoVm { .. } => Outcome::Invalid,
                    _ => Outcome::Unreadable,
                };
                outcome = outcome.max(this);
                records.push(e.record());
                continue;
            }
        };
        let file = &checked.manifest.file;
        for c in &checked.objects {
            let object = c.obj.display_name();
            if !c.report.is_valid() {
                outcome = outcome.max(Outcome::Invalid);
            }
            match args.output {
                ValidateOutput::Human if c.report.is_valid() => {
                    output::stdout(&format!("{file}: {object}: valid\n"))
                }
                ValidateOutput::Human => output::stdout(&checked.violations(c)),
                ValidateOutput::Json => {
                    if let Some(src) = checked.source(c) {
                        records.extend(
                            src.sorted(&c.report.violations)
                                .into_iter()
                                .map(|(pos, v)| Record::new(file, &object, v, pos)),
                        );
                    }
                }
            }
        }
    }
    if args.output == ValidateOutput::Json {
        output::stdout(&output::json(&records)?);
    }
    Ok(outcome)
}

/// `check_file` for the commands that go on to plan: a file without a VM is invalid
/// input (exit 1), as for `validate`; other input errors stay errors (exit 2).
fn check_to_plan(
    path: &str,
    cluster: &ClusterConfig,
    pod_addresses: Option<&[IpNet]>,
) -> anyhow::Result<Result<CheckedFile, Outcome>> {
    match check_file(path, cluster, pod_addresses) {
        Ok(c) => Ok(Ok(c)),
        Err(e @ input::InputError::NoVm { .. }) => {
            output::stderr(&format!("{e}\n"));
            Ok(Err(Outcome::Invalid))
        }
        Err(e) => Err(e.into()),
    }
}

/// Plans every VM of the file and prints the plans. Without a pod view the planner
/// assumes a typical pod and says so in the plan's notes (printed with the plan in every
/// output); nothing here repeats it.
pub fn plan(args: &PlanArgs) -> anyhow::Result<Outcome> {
    if args.show_device && args.output != PlanOutput::Table {
        anyhow::bail!("--show-device applies to --output table only");
    }
    let file = display_name(&args.file);
    let cluster = input::cluster_config(args.cluster_config.as_deref())?;
    let mut given = match (&args.pod_view, &args.netns) {
        (Some(path), _) => Some(input::pod_view_file(path)?),
        (None, Some(name)) => Some(
            netbind_netns::read_pod_view(name)
                .with_context(|| format!("--netns {name}: cannot read the pod view"))?,
        ),
        (None, None) => None,
    };
    let network_status = match &args.network_status {
        Some(path) => Some(input::network_status_file(path)?),
        None => None,
    };
    if let (Some(view), Some(status)) = (given.as_mut(), &network_status) {
        view.network_status = Some(status.clone());
    }
    let addresses = given.as_ref().map(PodView::addresses);
    let checked = match check_to_plan(&args.file, &cluster, addresses.as_deref())? {
        Ok(c) => c,
        Err(outcome) => return Ok(outcome),
    };
    if let Some(text) = checked.invalid_report() {
        output::stderr(&text);
        return Ok(Outcome::Invalid);
    }

    let mut plans: Vec<NetworkPlan> = Vec::new();
    let mut failures = String::new();
    for c in &checked.objects {
        let view = match &given {
            Some(v) => v.clone(),
            None => {
                let mut v = PodView::typical(&c.obj);
                v.network_status = network_status.clone().or(v.network_status);
                v
            }
        };
        match netbind_plan::plan(&c.obj, &cluster, &view) {
            Ok(p) => plans.push(p),
            Err(e) => failures.push_str(&format!("{file}: {}: {e}\n", c.obj.display_name())),
        }
    }
    if !failures.is_empty() {
        output::stderr(&failures);
        return Ok(Outcome::Invalid);
    }
    match args.output {
        PlanOutput::Table => {
            let render = if args.show_device {
                NetworkPlan::to_table_with_devices
            } else {
                NetworkPlan::to_table
            };
            let tables: Vec<String> = plans.iter().map(render).collect();
            output::stdout(&tables.join("\n"));
        }
        PlanOutput::Json => output::stdout(&output::json(&plans)?),
        PlanOutput::Yaml => output::stdout(&output::yaml(&plans)?),
        PlanOutput::Dot | PlanOutput::Svg if plans.is_empty() => {}
        PlanOutput::Dot => output::stdout(&render::dot::draw(&picture_all(&plans))),
        PlanOutput::Svg => output::stdout(&render::svg::draw(&picture_all(&plans))),
    }
    Ok(Outcome::Ok)
}

/// One element of `netbind annotations` output.
#[derive(Serialize)]
struct ObjectAnnotations {
    object: String,
    annotations: BTreeMap<String, String>,
}

pub fn annotations(args: &AnnotationsArgs) -> anyhow::Result<Outcome> {
    let cluster = input::cluster_config(args.cluster_config.as_deref())?;
    let checked = match check_to_plan(&args.file, &cluster, None)? {
        Ok(c) => c,
        Err(outcome) => return Ok(outcome),
    };
    if let Some(text) = checked.invalid_report() {
        output::stderr(&text);
        return Ok(Outcome::Invalid);
    }
    let list: Vec<ObjectAnnotations> = checked
        .objects
        .iter()
        .map(|c| ObjectAnnotations {
            object: c.obj.display_name(),
            annotations: multus::annotations(&c.obj, &cluster),
        })
        .collect();
    let text = match args.output {
        MachineOutput::Json => output::json(&list)?,
        MachineOutput::Yaml => output::yaml(&list)?,
    };
    output::stdout(&text);
    Ok(Outcome::Ok)
}

pub fn rules() -> anyhow::Result<Outcome> {
    let width = validate::RULES
        .iter()
        .map(|(id, _)| id.len())
        .max()
        .unwrap_or(0);
    let text: String = validate::RULES
        .iter()
        .map(|(id, description)| format!("{id:<width$}  {description}\n"))
        .collect();
    output::stdout(&text);
    Ok(Outcome::Ok)
}
