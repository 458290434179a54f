//! The subcommands: read inputs, run the pure stages, print, and return an [`Outcome`].
//!
//! Every command that works on VMs goes through [`check_file`]: parse the documents, note
//! unsupported kinds on stderr, apply KubeVirt's defaults, validate, print warnings. The
//! planner and the annotation writer only ever see defaulted objects that validated.

use std::collections::BTreeMap;

use anyhow::Context;
use ipnet::IpNet;
use netbind_plan::render::{self, picture::picture_all};
use netbind_plan::{NetworkPlan, PodView};
use netbind_spec::validate::{self, Report};
use netbind_spec::{ClusterConfig, Document, VmObject, defaults, multus};
use serde::Serialize;

use crate::input::{self, display_name};
use crate::output::{self, Record};
use crate::{
    AnnotationsArgs, MachineOutput, Outcome, PlanArgs, PlanOutput, ValidateArgs, ValidateOutput,
};

/// A defaulted object and what validation said about it.
pub(crate) struct Checked {
    pub(crate) obj: VmObject,
    report: Report,
}

/// Parses one manifest file and validates every VM/VMI in it (errors: unreadable input).
pub(crate) fn check_file(
    path: &str,
    cluster: &ClusterConfig,
    pod_addresses: Option<&[IpNet]>,
) -> Result<Vec<Checked>, input::InputError> {
    let file = display_name(path);
    let mut checked = Vec::new();
    for doc in input::manifests(path)? {
        match doc {
            Document::Vm(obj) => {
                let obj = defaults::apply(&obj, cluster);
                let report = validate::validate(&obj, cluster, pod_addresses);
                output::stderr(&output::warnings(&report));
                checked.push(Checked { obj, report });
            }
            Document::Unsupported { kind, name } => {
                let kind = if kind.is_empty() {
                    "<no kind>"
                } else {
                    kind.as_str()
                };
                let name = if name.is_empty() {
                    "<unnamed>"
                } else {
                    name.as_str()
                };
                output::stderr(&format!(
                    "{file}: {kind}/{name}: unsupported kind, skipped\n"
                ));
            }
        }
    }
    if checked.is_empty() {
        output::stderr(&format!(
            "{file}: no VirtualMachine or VirtualMachineInstance found\n"
        ));
    }
    Ok(checked)
}

/// Human violations of every invalid object, for stderr; whether any was invalid.
fn invalid_report(file: &str, checked: &[Checked]) -> Option<String> {
    let text: String = checked
        .iter()
        .filter(|c| !c.report.is_valid())
        .map(|c| output::human_violations(file, &c.obj.display_name(), &c.report.violations))
        .collect();
    (!text.is_empty()).then_some(text)
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
        let file = display_name(path);
        let checked = match check_file(path, &cluster, pod_addresses.as_deref()) {
            Ok(c) => c,
            Err(e) => {
                output::stderr(&format!("{e}\n"));
                outcome = outcome.max(Outcome::Unreadable);
                continue;
            }
        };
        for c in &checked {
            let object = c.obj.display_name();
            if !c.report.is_valid() {
                outcome = outcome.max(Outcome::Invalid);
            }
            match args.output {
                ValidateOutput::Human if c.report.is_valid() => {
                    output::stdout(&format!("{file}: {object}: valid\n"))
                }
                ValidateOutput::Human => output::stdout(&output::human_violations(
                    &file,
                    &object,
                    &c.report.violations,
                )),
                ValidateOutput::Json => records.extend(
                    c.report
                        .violations
                        .iter()
                        .map(|v| Record::new(&file, &object, v)),
                ),
            }
        }
    }
    if args.output == ValidateOutput::Json {
        output::stdout(&output::json(&records)?);
    }
    Ok(outcome)
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
    let checked = check_file(&args.file, &cluster, addresses.as_deref())?;
    if let Some(text) = invalid_report(&file, &checked) {
        output::stderr(&text);
        return Ok(Outcome::Invalid);
    }

    let mut plans: Vec<NetworkPlan> = Vec::new();
    let mut failures = String::new();
    for c in &checked {
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
    let file = display_name(&args.file);
    let cluster = input::cluster_config(args.cluster_config.as_deref())?;
    let checked = check_file(&args.file, &cluster, None)?;
    if let Some(text) = invalid_report(&file, &checked) {
        output::stderr(&text);
        return Ok(Outcome::Invalid);
    }
    let list: Vec<ObjectAnnotations> = checked
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
