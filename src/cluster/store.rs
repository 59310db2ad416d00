//! A generic indexed store of one kind of object, fed either by a state file or by a watch.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::watch;

use super::{ResourceKind, StateUnavailable};
use crate::model::ObjectMeta;

/// An object the store can hold: where it lives, and the secondary index values it has.
pub trait Cached: PartialEq + Send + Sync + 'static {
    const KIND: ResourceKind;
    /// Namespace (`""` for cluster-scoped objects) and name.
    fn key(&self) -> (&str, &str);
    /// Its metadata (the store compares objects apart from their `resourceVersion`).
    fn meta(&self) -> &ObjectMeta;
    fn meta_mut(&mut self) -> &mut ObjectMeta;
    /// Secondary index values (e.g. the driver of a snapshot class, `key=value` per node label).
    fn index_values(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Whether a store can answer lookups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncState {
    /// The first full list has not arrived yet (or no source was configured).
    Pending(String),
    /// The store reflects the cluster (or the state file).
    Synced,
    /// The kind does not exist in the cluster (the snapshot CRDs are not installed).
    Missing(String),
}

/// (namespace, name); the namespace is empty for cluster-scoped objects.
pub type ObjectKey = (String, String);

/// The objects filed under one index value, by key.
type Filed<T> = BTreeMap<ObjectKey, Arc<T>>;

/// The maps behind every lookup of the request path. foldhash rather than std's SipHash:
/// a lookup hashes the namespace and the name, a few lookups per review, and SipHash was a
/// percent of a review's instructions. Still seeded per process, so names chosen to collide
/// cannot be prepared in advance.
type Map<K, V> = HashMap<K, V, foldhash::quality::RandomState>;

struct Inner<T> {
    state: SyncState,
    /// namespace → name → object; nested so lookups by `&str` need no allocation.
    objects: Map<String, Map<String, Arc<T>>>,
    /// index value → (namespace, name) → object. The object is held here as well as in
    /// `objects` (one more reference, not a copy), so a lookup by index reads it in place
    /// instead of hashing its namespace and name again.
    index: BTreeMap<String, Filed<T>>,
    len: usize,
}

impl<T> Inner<T> {
    fn empty(state: SyncState) -> Self {
        Self {
            state,
            objects: Map::default(),
            index: BTreeMap::new(),
            len: 0,
        }
    }
}

/// The change counter a [`ClusterIndex`](super::ClusterIndex)'s stores share: bumped after
/// every write that changed what a store holds or says, so the controller can re-audit soon
/// after a change instead of at the next resync. A `watch` channel, so a burst of changes
/// wakes a waiting reader once, and the webhooks' reads never touch it.
pub type Changes = Arc<watch::Sender<u64>>;

pub struct Store<T> {
    inner: RwLock<Inner<T>>,
    changes: Changes,
}

impl<T: Cached> Store<T> {
    /// A store in `state` that bumps `changes` (shared with the other stores) when it changes.
    pub fn new(state: SyncState, changes: Changes) -> Self {
        Self {
            inner: RwLock::new(Inner::empty(state)),
            changes,
        }
    }

    /// Called after the write lock is released, so a woken reader never waits on it.
    /// `send_modify` updates the value even when nobody subscribed yet.
    fn changed(&self) {
        self.changes
            .send_modify(|generation| *generation = generation.wrapping_add(1));
    }

    // A poisoned lock only means another thread panicked mid-update; the maps are still
    // consistent enough to read, and refusing every review would wedge the cluster.
    fn read(&self) -> RwLockReadGuard<'_, Inner<T>> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner<T>> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn unavailable(state: &SyncState) -> Option<StateUnavailable> {
        match state {
            SyncState::Synced => None,
            SyncState::Pending(reason) | SyncState::Missing(reason) => Some(StateUnavailable {
                kind: T::KIND,
                reason: reason.clone(),
            }),
        }
    }

    pub fn state(&self) -> SyncState {
        self.read().state.clone()
    }

    pub fn set_state(&self, state: SyncState) {
        let changed = {
            let mut inner = self.write();
            let changed = inner.state != state;
            inner.state = state;
            changed
        };
        if changed {
            self.changed();
        }
    }

    pub fn len(&self) -> usize {
        self.read().len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, namespace: &str, name: &str) -> Result<Option<Arc<T>>, StateUnavailable> {
        let inner = self.read();
        if let Some(err) = Self::unavailable(&inner.state) {
            return Err(err);
        }
        Ok(inner
            .objects
            .get(namespace)
            .and_then(|m| m.get(name))
            .cloned())
    }

    /// Objects whose index values include `value`.
    pub fn by_index(&self, value: &str) -> Result<Vec<Arc<T>>, StateUnavailable> {
        let inner = self.read();
        if let Some(err) = Self::unavailable(&inner.state) {
            return Err(err);
        }
        Ok(Self::indexed(&inner, value).cloned().collect())
    }

    /// The objects whose index values include `value`, borrowed.
    fn indexed<'i>(inner: &'i Inner<T>, value: &str) -> impl Iterator<Item = &'i Arc<T>> {
        inner
            .index
            .get(value)
            .into_iter()
            .flat_map(BTreeMap::values)
    }

    /// Runs `f` over the objects whose index values include `value`, under the read lock:
    /// for a question about them (is there one that…) that needs no copy of the list.
    pub fn scan_index<R>(
        &self,
        value: &str,
        f: impl FnOnce(&mut dyn Iterator<Item = &Arc<T>>) -> R,
    ) -> Result<R, StateUnavailable> {
        let inner = self.read();
        if let Some(err) = Self::unavailable(&inner.state) {
            return Err(err);
        }
        Ok(f(&mut Self::indexed(&inner, value)))
    }

    /// How many objects are filed under each index value starting with `prefix`, keyed by the
    /// rest of the value. Counts only: never copies the key sets (a zone holds every node).
    pub fn index_counts(&self, prefix: &str) -> Result<Vec<(String, usize)>, StateUnavailable> {
        let inner = self.read();
        if let Some(err) = Self::unavailable(&inner.state) {
            return Err(err);
        }
        Ok(inner
            .index
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k[prefix.len()..].to_owned(), v.len()))
            .collect())
    }

    /// How many objects match every group, an object matching a group when it is filed under
    /// at least one of the group's index values (groups ANDed, values ORed). No groups: every
    /// object. Costs O(values) for one group and O(smallest group × groups) otherwise, never a
    /// scan of the store.
    pub fn count_matching(&self, groups: &[Vec<String>]) -> Result<usize, StateUnavailable> {
        let inner = self.read();
        if let Some(err) = Self::unavailable(&inner.state) {
            return Err(err);
        }
        let sets = |values: &[String]| -> Vec<&Filed<T>> {
            let mut unique: Vec<&String> = values.iter().collect();
            unique.sort();
            unique.dedup();
            unique
                .into_iter()
                .filter_map(|v| inner.index.get(v))
                .collect()
        };
        let groups: Vec<Vec<&Filed<T>>> = groups.iter().map(|g| sets(g)).collect();
        let size = |g: &Vec<&Filed<T>>| g.iter().map(|s| s.len()).sum::<usize>();
        match groups.len() {
            0 => Ok(inner.len),
            // An object has one value per index key, so one group's sets are disjoint.
            1 => Ok(size(&groups[0])),
            _ => {
                let Some((smallest, _)) = groups.iter().enumerate().min_by_key(|(_, g)| size(g))
                else {
                    return Ok(0);
                };
                let candidates: BTreeSet<&ObjectKey> =
                    groups[smallest].iter().flat_map(|s| s.keys()).collect();
                Ok(candidates
                    .into_iter()
                    .filter(|key| {
                        groups
                            .iter()
                            .enumerate()
                            .all(|(i, g)| i == smallest || g.iter().any(|s| s.contains_key(*key)))
                    })
                    .count())
            }
        }
    }

    /// The objects of `namespace` that `keep` keeps, narrowed first by the index: candidates
    /// are the objects filed under the smallest of `groups` (each group's values ORed, as in
    /// [`Store::count_matching`]); with no groups, every object of the namespace. `keep` must
    /// apply every requirement, the groups' included: they only narrow. Never a scan of the
    /// whole store.
    pub fn select_in(
        &self,
        namespace: &str,
        groups: &[Vec<String>],
        keep: impl Fn(&T) -> bool,
    ) -> Result<Vec<Arc<T>>, StateUnavailable> {
        let inner = self.read();
        if let Some(err) = Self::unavailable(&inner.state) {
            return Err(err);
        }
        let Some(objects) = inner.objects.get(namespace) else {
            return Ok(Vec::new());
        };
        let group_sets = |values: &Vec<String>| -> Vec<&Filed<T>> {
            values.iter().filter_map(|v| inner.index.get(v)).collect()
        };
        let smallest = groups
            .iter()
            .map(group_sets)
            .min_by_key(|sets| sets.iter().map(|s| s.len()).sum::<usize>());
        let mut found: Vec<Arc<T>> = match smallest {
            None => objects.values().filter(|o| keep(o)).cloned().collect(),
            Some(sets) => {
                // An object filed under two of the group's values is found once.
                let filed: BTreeMap<&ObjectKey, &Arc<T>> = sets.into_iter().flatten().collect();
                filed
                    .into_iter()
                    .filter(|((ns, _), _)| ns == namespace)
                    .map(|(_, object)| object)
                    .filter(|o| keep(o))
                    .cloned()
                    .collect()
            }
        };
        found.sort_by(|a, b| a.key().1.cmp(b.key().1));
        Ok(found)
    }

    /// Runs `f` over every object (for the rare lookups no index can serve).
    pub fn scan<R>(
        &self,
        f: impl FnOnce(&mut dyn Iterator<Item = &Arc<T>>) -> R,
    ) -> Result<R, StateUnavailable> {
        let inner = self.read();
        if let Some(err) = Self::unavailable(&inner.state) {
            return Err(err);
        }
        let mut iter = inner.objects.values().flat_map(|m| m.values());
        Ok(f(&mut iter))
    }

    /// Inserts or replaces one object (a watch `Apply`). An object that differs from the cached
    /// one only in its `resourceVersion` is still stored (the backfill's patches are guarded
    /// by it) but is not a change: every write bumps that version, including the status
    /// updates of fields the model drops (a node's heartbeat), which must not wake the audit.
    pub fn apply(&self, mut obj: T) {
        let changed = {
            let mut inner = self.write();
            let (ns, name) = obj.key();
            let old = inner.objects.get(ns).and_then(|m| m.get(name)).cloned();
            let changed = old.is_none_or(|old| !same_apart_from_version(old.as_ref(), &mut obj));
            Self::insert(&mut inner, Arc::new(obj));
            changed
        };
        if changed {
            self.changed();
        }
    }

    /// Removes one object (a watch `Delete`).
    pub fn delete(&self, namespace: &str, name: &str) {
        let removed = Self::remove(&mut self.write(), namespace, name);
        if removed {
            self.changed();
        }
    }

    /// Replaces the whole content at once and marks the store synced (the end of a list or
    /// relist): until then the previous content keeps serving, so a relist after `410 Gone`
    /// never empties the cache. Always a change: relists are rare, and comparing the whole
    /// content would cost more than the audit pass it might save.
    pub fn replace(&self, objects: impl IntoIterator<Item = T>) {
        let mut fresh = Inner::empty(SyncState::Synced);
        for obj in objects {
            Self::insert(&mut fresh, Arc::new(obj));
        }
        *self.write() = fresh;
        self.changed();
    }

    fn insert(inner: &mut Inner<T>, obj: Arc<T>) {
        let (ns, name) = obj.key();
        let (ns, name) = (ns.to_owned(), name.to_owned());
        Self::remove(inner, &ns, &name);
        for value in obj.index_values() {
            inner
                .index
                .entry(value)
                .or_default()
                .insert((ns.clone(), name.clone()), obj.clone());
        }
        inner.objects.entry(ns).or_default().insert(name, obj);
        inner.len += 1;
    }

    /// Whether an object was there to remove.
    fn remove(inner: &mut Inner<T>, ns: &str, name: &str) -> bool {
        let Some(by_name) = inner.objects.get_mut(ns) else {
            return false;
        };
        let Some(old) = by_name.remove(name) else {
            return false;
        };
        if by_name.is_empty() {
            inner.objects.remove(ns);
        }
        inner.len -= 1;
        for value in old.index_values() {
            if let Some(set) = inner.index.get_mut(&value) {
                set.remove(&(ns.to_owned(), name.to_owned()));
                if set.is_empty() {
                    inner.index.remove(&value);
                }
            }
        }
        true
    }
}

/// Whether `new` holds what `old` holds apart from `metadata.resourceVersion`. Compares with
/// `old`'s version lent to `new` for the comparison: the stored object is shared (`Arc`), so
/// the new one is the one to adjust, and it gets its own version back before it is stored.
fn same_apart_from_version<T: Cached>(old: &T, new: &mut T) -> bool {
    let own = std::mem::replace(
        &mut new.meta_mut().resource_version,
        old.meta().resource_version.clone(),
    );
    let same = old == new;
    new.meta_mut().resource_version = own;
    same
}
