//! The contract every module implements, and the registry that dispatches a step to its module.
//!
//! A module is a unit type in its own file implementing [`Module`]: its [`ModuleSpec`] (name,
//! arguments, reversibility: what `check` validates a step against), `probe` and `apply`, and,
//! where it has them, its way back, the paths it may touch, the other hosts it reads and whether
//! it only reads. The [`registry!`] list in `mod.rs` names every module once; it generates the
//! dispatch functions (`probe`, `apply`, …) the engine and the plan call with a step's module
//! name. See `src/modules/README.md` for how to add a module.

use anyhow::Result;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value as J};

use super::spec::ModuleSpec;
use super::{ModCtx, Outcome, Probe, UndoAction};
use crate::overlay::{Effect, PathState, TreeState};

/// One module's whole life: what it accepts, how it reads a host, how it changes it, how the
/// change is undone. Only `SPEC`, `probe` and `apply` are required; the rest default to "none".
pub(crate) trait Module {
    /// The module's name (spelled here and nowhere else), arguments and reversibility.
    const SPEC: ModuleSpec;

    /// The arguments as the module reads them: a `Deserialize` struct whose fields are
    /// `SPEC.args` (the registry's test checks they agree), parsed once per step from the
    /// rendered map.
    type Args: DeserializeOwned;

    /// Fields of `Args` that are not in `SPEC.args`: arguments only the module's own way back
    /// (an [`UndoAction::Rerun`]) passes (`lb_member`'s `restore_from`), which `check` refuses
    /// in a playbook.
    #[cfg_attr(not(test), allow(dead_code))] // read by the registry's test only
    const UNDO_ONLY: &'static [&'static str] = &[];

    /// The step's rendered map as `Args` ([`args::parse`](super::args::parse)). A module
    /// whose way back reruns it with its own map (an [`UndoAction::Rerun`]) overrides this to
    /// keep that map as it was written beside the fields, so the journal records it unchanged.
    fn parse_args(map: &Map<String, J>) -> Result<Self::Args> {
        super::args::parse(Self::SPEC.name, map)
    }

    /// Read the host without changing it and decide: no change, a change, or unknown.
    async fn probe(args: &Self::Args, ctx: &ModCtx<'_>) -> Result<Probe>;

    /// Make the change the probe decided on, and say how to undo it.
    async fn apply(args: &Self::Args, probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome>;

    /// The way back, known from the probe before the change starts (see
    /// [`super::pending_undo`]). Default: the module keeps no way back it can know in advance.
    fn pending_undo(_args: &Self::Args, _probe: &Probe, _ctx: &ModCtx<'_>) -> Option<UndoAction> {
        None
    }

    /// Does the step only read, though its probe cannot say "no change" in advance?
    fn changes_nothing(_args: &Self::Args) -> bool {
        false
    }

    /// Other hosts the step reads besides its own, by inventory name.
    fn peer_hosts(_args: &Self::Args) -> Vec<String> {
        Vec::new()
    }

    /// What the step may change on its host, none of it known in advance (for a plan).
    fn touches(_args: &Self::Args) -> Vec<Effect> {
        Vec::new()
    }

    /// What a step whose probe said "unknown" did, told from its result.
    fn describe_done(_result: &Map<String, J>) -> Option<String> {
        None
    }
}

/// A path a step may change, its state after the step unknown. `{by}` in the reason is replaced
/// by the step's name when it is recorded.
pub(crate) fn unknown_path(p: &str) -> Effect {
    Effect::Path {
        path: p.to_string(),
        state: PathState::Unknown {
            why: format!(
                "{{by}} may change {p}; what it looks like after that is known only when it runs"
            ),
        },
    }
}

/// A tree a step may change (the path and everything below it), its state after unknown.
pub(crate) fn unknown_tree(p: &str) -> Effect {
    Effect::Tree {
        path: p.to_string(),
        state: TreeState::Unknown {
            why: format!("{{by}} may change {p} and what is below it; known only when it runs"),
        },
    }
}

/// The registry: one line per module type, in the order `check` lists module names. Generates
/// `SPECS` and the functions that dispatch on a step's module name.
macro_rules! registry {
    ($($m:ty),+ $(,)?) => {
        /// Does every module's `Args` agree with its `SPEC.args` (see [`args::spec_agrees`])?
        /// `Ok(true)`: typed and agreeing, `Ok(false)`: still reads the raw map.
        #[cfg(test)]
        pub(crate) fn args_agree_with_specs() -> Vec<(&'static str, Result<bool, String>)> {
            vec![$((
                <$m as Module>::SPEC.name,
                args::spec_agrees_beside::<<$m as Module>::Args>(
                    &<$m as Module>::SPEC,
                    <$m as Module>::UNDO_ONLY,
                ),
            )),+]
        }

        /// Every module's spec, in the order of the registry.
        pub(crate) static SPECS: &[&spec::ModuleSpec] = &[$(&<$m as Module>::SPEC),+];

        /// Probe a host for a step of `module` (see [`Module::probe`]).
        pub async fn probe(module: &str, args: &Map<String, J>, ctx: &ModCtx<'_>) -> Result<Probe> {
            $(if module == <$m as Module>::SPEC.name {
                let a = <$m as Module>::parse_args(args)?;
                return <$m as Module>::probe(&a, ctx).await;
            })+
            bail!("module `{module}` is not implemented by the engine yet")
        }

        /// Apply a step of `module` (see [`Module::apply`]).
        pub async fn apply(
            module: &str,
            args: &Map<String, J>,
            probe: &Probe,
            ctx: &ModCtx<'_>,
        ) -> Result<Outcome> {
            $(if module == <$m as Module>::SPEC.name {
                let a = <$m as Module>::parse_args(args)?;
                return <$m as Module>::apply(&a, probe, ctx).await;
            })+
            bail!("module `{module}` is not implemented by the engine yet")
        }

        /// The way back a step will record if its change completes, computed from the probe
        /// before the change starts, so the engine can journal it with the intent
        /// (`step_applying`): a controller killed in the middle of the change still leaves a way
        /// back. Every action returned here is safe to run when the change was only partly made
        /// or not at all (run with [`UndoAction::run_partial`]). `None`: the module keeps no way
        /// back (or cannot know it before it acts: packages, users, groups, sync, commands).
        pub fn pending_undo(
            module: &str,
            args: &Map<String, J>,
            probe: &Probe,
            ctx: &ModCtx<'_>,
        ) -> Option<UndoAction> {
            $(if module == <$m as Module>::SPEC.name {
                // Arguments that do not parse: the probe says why; nothing more here.
                return <$m as Module>::parse_args(args)
                    .map_or(None, |a| <$m as Module>::pending_undo(&a, probe, ctx));
            })+
            None
        }

        /// What a step did, told from its result, for a step whose probe could not say
        /// beforehand (an `unknown` decision): its result line must read as what happened, not
        /// as the doubt the probe had. `None` where the module's result says nothing more than
        /// "changed".
        pub fn describe_done(module: &str, result: &Map<String, J>) -> Option<String> {
            $(if module == <$m as Module>::SPEC.name {
                return <$m as Module>::describe_done(result);
            })+
            None
        }

        /// Does this module, with these arguments, only read (though its probe cannot say "no
        /// change" in advance: a wait for the replica, a read-only query)? Such a step cut off
        /// by a kill left nothing half done. `args` may be as written, not rendered yet
        /// ([`args::parse_as_written`]).
        pub fn changes_nothing(module: &str, args: &Map<String, J>) -> bool {
            $(if module == <$m as Module>::SPEC.name {
                // Arguments that do not parse: the probe says why; nothing more here.
                return args::parse_as_written::<<$m as Module>::Args>(module, args)
                    .map_or(false, |a| <$m as Module>::changes_nothing(&a));
            })+
            false
        }

        /// Other hosts a step's module reads besides its own, by inventory name (`sync`'s
        /// `src_host`, `mysql_replication`'s `master`, `cluster_safety`'s `hosts`): the engine
        /// and plans connect to them and pass them in [`ModCtx::peers`]. `args` may be as
        /// written, not rendered yet ([`args::parse_as_written`]).
        pub fn peer_hosts(module: &str, args: &Map<String, J>) -> Vec<String> {
            $(if module == <$m as Module>::SPEC.name {
                // Arguments that do not parse: the probe says why; nothing more here.
                return args::parse_as_written::<<$m as Module>::Args>(module, args)
                    .map_or(Vec::new(), |a| <$m as Module>::peer_hosts(&a));
            })+
            Vec::new()
        }

        /// What a step may change on its host, none of it known in advance: for a plan, the
        /// state after a step whose outcome is unknown (or whose module does not derive it).
        /// `{by}` in a reason is replaced by the step's name when it is recorded.
        pub fn touches(module: &str, args: &Map<String, J>) -> Vec<Effect> {
            $(if module == <$m as Module>::SPEC.name {
                // Arguments that do not parse: the probe says why; nothing more here.
                return <$m as Module>::parse_args(args)
                    .map_or(Vec::new(), |a| <$m as Module>::touches(&a));
            })+
            Vec::new()
        }
    };
}
pub(crate) use registry;
