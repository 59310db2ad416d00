//! The kinds of objects rules judge, and the typed check each rule has for a kind.
//!
//! A rule's checks are typed (`fn(&Input<'_, VolumeSnapshot>, …)`), but the table holds rules
//! of every kind side by side, so each check is wrapped in a [`Check`] variant named after its
//! kind. The admission edge decodes the request's object once into an [`Object`] of the same
//! kind and hands it to every check of that kind; the audit scans the store of the kind.
//! Adding a kind is one line in the `kinds!` invocation below.

use serde::de::DeserializeOwned;

use super::{Input, Operation, Phase, RuleResult};
use crate::cluster::{Cached, ClusterIndex, ClusterView, ResourceKind, Store};
use crate::model::{
    Node, ObjectMeta, PersistentVolume, PersistentVolumeClaim, Pod, StorageClass, VolumeSnapshot,
    VolumeSnapshotClass, VolumeSnapshotContent,
};
use crate::model::{VolumeGroupSnapshot, VolumeGroupSnapshotClass, VolumeGroupSnapshotContent};
use crate::policy::Policy;

/// A rule's check of one kind of object.
pub type CheckFn<T> = fn(&Input<'_, T>, &dyn ClusterView, &Policy) -> RuleResult;

/// A rule's check of kind `T`, and whether the audit runs it on the cached objects.
pub struct For<T: 'static> {
    pub check: CheckFn<T>,
    pub audit: Option<Audited<T>>,
}

/// How the audit asks a rule about an existing object of kind `T`.
pub struct Audited<T: 'static> {
    /// The cached objects it is asked about (e.g. PVCs that are not bound yet).
    pub select: fn(&T) -> bool,
    /// Asked in this phase,
    pub phase: Phase,
    /// as a CREATE of the object, or as an UPDATE whose old object is the object itself (for
    /// rules with a message written for an already existing problem).
    pub operation: Operation,
}

impl<T> For<T> {
    /// A check the webhook runs and the audit does not.
    pub const fn webhook(check: CheckFn<T>) -> Self {
        Self { check, audit: None }
    }

    /// A check the webhook runs and the audit runs too, on the objects `audit` selects.
    pub const fn audited(check: CheckFn<T>, audit: Audited<T>) -> Self {
        Self {
            check,
            audit: Some(audit),
        }
    }

    /// The input the audit (or backfill) builds for an existing object.
    pub fn existing<'a>(object: &'a T, phase: Phase, operation: Operation) -> Input<'a, T> {
        Input {
            operation,
            phase,
            object,
            old_object: (operation == Operation::Update).then_some(object),
        }
    }
}

/// What the audit does with each kind's store and checks, without knowing the kind.
pub trait StoreVisitor {
    fn visit<T: Cached>(&mut self, store: &Store<T>, check: &For<T>);
}

/// Objects the admission edge can decode for rules.
pub trait Judged: DeserializeOwned + Cached {
    /// The typed check inside `check`, when it is a check of this kind.
    fn check(check: &Check) -> Option<&For<Self>>;
}

macro_rules! kinds {
    ($($kind:ident => $ty:ident in $store:ident),* $(,)?) => {
        /// A rule's check of one kind, named by the kind.
        pub enum Check {
            $($kind(For<$ty>),)*
        }

        /// An object of a kind rules judge, decoded from a review.
        #[derive(Debug)]
        pub enum Object {
            $($kind($ty),)*
        }

        impl Check {
            pub fn kind(&self) -> ResourceKind {
                match self {
                    $(Self::$kind(_) => ResourceKind::$kind,)*
                }
            }

            /// Runs the check on `object` (and `old_object`). `None` when the objects are not
            /// of the check's kind: the edge never asks that, the types just cannot say so.
            pub fn run(
                &self,
                operation: Operation,
                phase: Phase,
                object: &Object,
                old_object: Option<&Object>,
                view: &dyn ClusterView,
                policy: &Policy,
            ) -> Option<RuleResult> {
                match (self, object) {
                    $((Self::$kind(f), Object::$kind(object)) => {
                        let old_object = match old_object {
                            Some(Object::$kind(old)) => Some(old),
                            Some(_) => return None,
                            None => None,
                        };
                        let input = Input { operation, phase, object, old_object };
                        Some((f.check)(&input, view, policy))
                    })*
                    _ => None,
                }
            }

            /// Whether the audit runs this check on existing objects.
            pub fn is_audited(&self) -> bool {
                match self {
                    $(Self::$kind(f) => f.audit.is_some(),)*
                }
            }

            /// Hands the store of the check's kind and the typed check to `visitor`.
            pub fn visit_store(&self, index: &ClusterIndex, visitor: &mut impl StoreVisitor) {
                match self {
                    $(Self::$kind(f) => visitor.visit(&index.$store, f),)*
                }
            }
        }

        impl Object {
            /// Decodes the JSON `text` (found at `at`, e.g. `request.object`) as a `kind`.
            pub fn decode(
                kind: ResourceKind,
                text: &str,
                at: std::fmt::Arguments<'_>,
            ) -> Result<Self, String> {
                match kind {
                    $(ResourceKind::$kind => crate::model::parse_at(text, at).map(Self::$kind),)*
                    // Cached for diagnoses only (CSIDrivers): no rule has a check to decode for.
                    #[allow(unreachable_patterns)]
                    _ => Err(format!("{at}: no rule judges {kind} objects")),
                }
            }

            /// Reads a `kind` from any serde deserializer: the review's one pass reads
            /// `request.object` straight into the slim model with it.
            pub fn deserialize_as<'de, D: serde::Deserializer<'de>>(
                kind: ResourceKind,
                deserializer: D,
            ) -> Result<Self, D::Error> {
                match kind {
                    $(ResourceKind::$kind => {
                        <$ty as serde::Deserialize>::deserialize(deserializer).map(Self::$kind)
                    })*
                    #[allow(unreachable_patterns)]
                    _ => Err(serde::de::Error::custom(format!("no rule judges {kind} objects"))),
                }
            }

            /// Whether rules judge objects of `kind` (some kinds are cached for diagnoses only).
            pub fn is_judged(kind: ResourceKind) -> bool {
                matches!(kind, $(ResourceKind::$kind)|*)
            }

            pub fn meta_mut(&mut self) -> &mut ObjectMeta {
                match self {
                    $(Self::$kind(o) => &mut o.metadata,)*
                }
            }
        }

        $(impl Judged for $ty {
            fn check(check: &Check) -> Option<&For<Self>> {
                match check {
                    Check::$kind(f) => Some(f),
                    #[allow(unreachable_patterns)]
                    _ => None,
                }
            }
        })*
    };
}

kinds! {
    VolumeSnapshotClass => VolumeSnapshotClass in snapshot_classes,
    VolumeSnapshot => VolumeSnapshot in snapshots,
    VolumeSnapshotContent => VolumeSnapshotContent in snapshot_contents,
    StorageClass => StorageClass in storage_classes,
    PersistentVolumeClaim => PersistentVolumeClaim in pvcs,
    PersistentVolume => PersistentVolume in pvs,
    Node => Node in nodes,
    Pod => Pod in pods,
    VolumeGroupSnapshotClass => VolumeGroupSnapshotClass in group_snapshot_classes,
    VolumeGroupSnapshot => VolumeGroupSnapshot in group_snapshots,
    VolumeGroupSnapshotContent => VolumeGroupSnapshotContent in group_snapshot_contents,
}
