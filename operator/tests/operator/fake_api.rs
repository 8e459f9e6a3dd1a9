//! An in-memory Kubernetes API server, enough of one for the operator's controllers to run
//! against it unchanged: list and watch (long-polled), get, create, server-side apply (one
//! field manager: an apply replaces what it names), JSON patch (finalizers), the status
//! subresource, delete with finalizers, label selectors, resource versions and generations.
//! Like Kubernetes' garbage collector, it deletes an object once none of its owners exists.
//! A kind can be withheld, as the API server withholds a kind whose CRD is not established yet.
//! It does not run pods; a test plays the kubelet.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{Request, Response};
use kube::client::Body;
use parking_lot::Mutex;
use serde_json::{json, Value};

/// (api group/version, plural, namespace, name)
type Key = (String, String, String, String);

#[derive(Default)]
struct State {
    objects: BTreeMap<Key, Value>,
    /// Every change, in resource-version order: what watches replay.
    log: Vec<(u64, Key, &'static str, Value)>,
    version: u64,
    /// Writes other than Events: (method, path).
    writes: Vec<(String, String)>,
    events: Vec<Value>,
    /// Plurals answered 404 on every path: their CRD is not established yet.
    withheld: Vec<String>,
}

#[derive(Clone, Default)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
}

/// A parsed request path.
struct Target {
    gv: String,
    plural: String,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn parse(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (gv, rest) = match parts.as_slice() {
        ["api", v, rest @ ..] => ((*v).to_owned(), rest),
        ["apis", g, v, rest @ ..] => (format!("{g}/{v}"), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_owned()), rest),
        rest => (None, rest),
    };
    let (plural, name, subresource) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some((*name).to_owned()), None),
        [plural, name, sub] => (*plural, Some((*name).to_owned()), Some((*sub).to_owned())),
        _ => return None,
    };
    Some(Target {
        gv,
        plural: plural.to_owned(),
        namespace,
        name,
        subresource,
    })
}

fn query(uri: &http::Uri, key: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| {
            v.replace("%3D", "=")
                .replace("%2C", ",")
                .replace("%2F", "/")
        })
    })
}

fn reply(status: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap_or_default()))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

fn status(code: u16, reason: &str, message: &str) -> Response<Body> {
    reply(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "reason": reason, "code": code, "message": message}),
    )
}

fn matches_labels(obj: &Value, selector: Option<&str>) -> bool {
    let Some(selector) = selector.filter(|s| !s.is_empty()) else {
        return true;
    };
    selector.split(',').all(|kv| match kv.split_once('=') {
        Some((k, v)) => obj["metadata"]["labels"][k] == v,
        None => true,
    })
}

impl State {
    fn record(&mut self, key: &Key, kind: &'static str, obj: &mut Value) {
        self.version += 1;
        obj["metadata"]["resourceVersion"] = json!(self.version.to_string());
        self.log
            .push((self.version, key.clone(), kind, obj.clone()));
    }

    fn store(&mut self, key: Key, mut obj: Value, created: bool) -> Value {
        self.record(&key, if created { "ADDED" } else { "MODIFIED" }, &mut obj);
        self.objects.insert(key, obj.clone());
        self.collect_garbage();
        obj
    }

    /// Deletes every object whose owners are all gone (what the garbage collector does).
    fn collect_garbage(&mut self) {
        loop {
            let uids: std::collections::HashSet<String> = self
                .objects
                .values()
                .filter_map(|o| o["metadata"]["uid"].as_str().map(str::to_owned))
                .collect();
            let orphan = self.objects.iter().find_map(|(k, o)| {
                let owners = o["metadata"]["ownerReferences"].as_array()?;
                let all_gone = !owners.is_empty()
                    && owners
                        .iter()
                        .all(|r| !uids.contains(r["uid"].as_str().unwrap_or_default()));
                all_gone.then(|| k.clone())
            });
            let Some(key) = orphan else { return };
            if let Some(mut obj) = self.objects.remove(&key) {
                self.record(&key, "DELETED", &mut obj);
            }
        }
    }

    fn remove_or_finalize(&mut self, key: &Key) -> Option<Value> {
        let mut obj = self.objects.get(key)?.clone();
        let finalizers = obj["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if finalizers {
            if obj["metadata"]["deletionTimestamp"].is_null() {
                obj["metadata"]["deletionTimestamp"] = json!("2026-06-01T00:00:00Z");
                return Some(self.store(key.clone(), obj, false));
            }
            return Some(obj);
        }
        self.objects.remove(key);
        self.record(key, "DELETED", &mut obj);
        self.collect_garbage();
        Some(obj)
    }
}

impl FakeApi {
    /// Creates (or replaces) an object as `kubectl apply` would.
    pub fn put(&self, gv: &str, plural: &str, obj: Value) {
        let ns = obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let key = (gv.to_owned(), plural.to_owned(), ns, name);
        let mut state = self.state.lock();
        let existing = state.objects.get(&key).cloned();
        let mut obj = obj;
        match existing {
            Some(old) => {
                let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
                let changed = old["spec"] != obj["spec"];
                obj["metadata"] = old["metadata"].clone();
                obj["metadata"]["generation"] = json!(generation + i64::from(changed));
                obj["status"] = old["status"].clone();
                state.store(key, obj, false);
            }
            None => {
                let n = state.version + 1;
                obj["metadata"]["uid"] = json!(format!("uid-{n}"));
                obj["metadata"]["generation"] = json!(1);
                obj["metadata"]["creationTimestamp"] = json!("2026-06-01T00:00:00Z");
                state.store(key, obj, true);
            }
        }
    }

    pub fn get(&self, gv: &str, plural: &str, ns: &str, name: &str) -> Option<Value> {
        let key = (
            gv.to_owned(),
            plural.to_owned(),
            ns.to_owned(),
            name.to_owned(),
        );
        self.state.lock().objects.get(&key).cloned()
    }

    pub fn delete(&self, gv: &str, plural: &str, ns: &str, name: &str) {
        let key = (
            gv.to_owned(),
            plural.to_owned(),
            ns.to_owned(),
            name.to_owned(),
        );
        self.state.lock().remove_or_finalize(&key);
    }

    /// Answers 404 to every request for `plural` until [`FakeApi::establish`]: a kind whose
    /// CRD is still being installed.
    pub fn withhold(&self, plural: &str) {
        self.state.lock().withheld.push(plural.to_owned());
    }

    /// Serves `plural` again: its CRD is established.
    pub fn establish(&self, plural: &str) {
        self.state.lock().withheld.retain(|p| p != plural);
    }

    /// Plays the kubelet: every StatefulSet gets all its replicas ready.
    pub fn make_workers_ready(&self) {
        let mut state = self.state.lock();
        let sets: Vec<(Key, Value)> = state
            .objects
            .iter()
            .filter(|(k, _)| k.1 == "statefulsets")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (key, mut set) in sets {
            let replicas = set["spec"]["replicas"].clone();
            if set["status"]["readyReplicas"] != replicas {
                set["status"] = json!({"replicas": replicas, "readyReplicas": replicas});
                state.store(key, set, false);
            }
        }
    }

    pub fn writes(&self) -> Vec<(String, String)> {
        self.state.lock().writes.clone()
    }

    pub fn event_reasons(&self) -> Vec<String> {
        self.state
            .lock()
            .events
            .iter()
            .filter_map(|e| e["reason"].as_str().map(str::to_owned))
            .collect()
    }

    async fn handle(self, request: Request<Body>) -> Response<Body> {
        let method = request.method().as_str().to_owned();
        let uri = request.uri().clone();
        let content_type = request
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let Ok(bytes) = request.into_body().collect_bytes().await else {
            return status(400, "BadRequest", "unreadable body");
        };
        let body: Value = serde_json::from_slice(&bytes)
            .or_else(|_| serde_yaml::from_slice(&bytes))
            .unwrap_or(Value::Null);
        let Some(target) = parse(uri.path()) else {
            return status(404, "NotFound", "no such path");
        };
        if self.state.lock().withheld.contains(&target.plural) {
            return status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            );
        }
        if target.plural == "events" && target.gv.starts_with("events.k8s.io") {
            self.state.lock().events.push(body.clone());
            return reply(201, &body);
        }
        if method != "GET" {
            self.state
                .lock()
                .writes
                .push((method.clone(), uri.path().to_owned()));
        }
        match (method.as_str(), &target.name) {
            ("GET", None) if query(&uri, "watch").as_deref() == Some("true") => {
                self.watch(&target, &uri).await
            }
            ("GET", None) => self.list(&target, &uri),
            ("GET", Some(name)) => {
                let key = key(&target, name);
                match self.state.lock().objects.get(&key) {
                    Some(obj) => reply(200, obj),
                    None => status(404, "NotFound", &format!("{name} not found")),
                }
            }
            ("POST", None) => {
                let name = body["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                self.put(&target.gv, &target.plural, body.clone());
                let key = key(&target, &name);
                let obj = self.state.lock().objects.get(&key).cloned().unwrap_or(body);
                reply(201, &obj)
            }
            ("PATCH", Some(name)) => self.patch(&target, name, &content_type, body),
            ("DELETE", Some(name)) => {
                let key = key(&target, name);
                match self.state.lock().remove_or_finalize(&key) {
                    Some(obj) => reply(200, &obj),
                    None => status(404, "NotFound", &format!("{name} not found")),
                }
            }
            _ => status(405, "MethodNotAllowed", &method),
        }
    }

    fn list(&self, target: &Target, uri: &http::Uri) -> Response<Body> {
        let selector = query(uri, "labelSelector");
        let state = self.state.lock();
        let items: Vec<&Value> = state
            .objects
            .iter()
            .filter(|(k, v)| {
                k.0 == target.gv
                    && k.1 == target.plural
                    && target.namespace.as_ref().is_none_or(|ns| &k.2 == ns)
                    && matches_labels(v, selector.as_deref())
            })
            .map(|(_, v)| v)
            .collect();
        reply(
            200,
            &json!({"apiVersion": target.gv, "kind": "List",
                    "metadata": {"resourceVersion": state.version.to_string()}, "items": items}),
        )
    }

    /// Long-polls: answers with the changes after the given version as soon as there are
    /// some (or after half a second with none), then ends, and the watcher watches again.
    async fn watch(&self, target: &Target, uri: &http::Uri) -> Response<Body> {
        let since: u64 = query(uri, "resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let deadline = Instant::now() + Duration::from_millis(500);
        loop {
            let lines: Vec<String> = {
                let state = self.state.lock();
                state
                    .log
                    .iter()
                    .filter(|(v, k, _, _)| {
                        *v > since
                            && k.0 == target.gv
                            && k.1 == target.plural
                            && target.namespace.as_ref().is_none_or(|ns| &k.2 == ns)
                    })
                    .map(|(_, _, kind, obj)| json!({"type": kind, "object": obj}).to_string())
                    .collect()
            };
            if !lines.is_empty() || Instant::now() >= deadline {
                let mut text = lines.join("\n");
                text.push('\n');
                return Response::builder()
                    .status(200)
                    .body(Body::from(if lines.is_empty() {
                        Vec::new()
                    } else {
                        text.into_bytes()
                    }))
                    .unwrap_or_else(|_| Response::new(Body::empty()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn patch(
        &self,
        target: &Target,
        name: &str,
        content_type: &str,
        body: Value,
    ) -> Response<Body> {
        let key = key(target, name);
        let mut state = self.state.lock();
        let existing = state.objects.get(&key).cloned();
        let status_only = target.subresource.as_deref() == Some("status");
        let updated = if content_type.contains("json-patch") {
            let Some(mut obj) = existing else {
                return status(404, "NotFound", name);
            };
            // The API server reads a missing field as null (a `test` for null passes).
            if obj["metadata"].get("finalizers").is_none() {
                obj["metadata"]["finalizers"] = Value::Null;
            }
            let Ok(ops) = serde_json::from_value::<json_patch::Patch>(body) else {
                return status(400, "BadRequest", "not a JSON patch");
            };
            if let Err(e) = json_patch::patch(&mut obj, &ops) {
                return status(422, "Invalid", &e.to_string());
            }
            obj
        } else if status_only {
            let Some(mut obj) = existing else {
                return status(404, "NotFound", name);
            };
            obj["status"] = body["status"].clone();
            obj
        } else {
            // Server-side apply by the one manager there is: what it names is what it gets.
            let created = existing.is_none();
            let mut obj = body;
            let generation = existing
                .as_ref()
                .map(|old| {
                    let g = old["metadata"]["generation"].as_i64().unwrap_or(1);
                    g + i64::from(old["spec"] != obj["spec"])
                })
                .unwrap_or(1);
            if let Some(old) = &existing {
                for field in [
                    "uid",
                    "creationTimestamp",
                    "finalizers",
                    "deletionTimestamp",
                ] {
                    if !old["metadata"][field].is_null() {
                        obj["metadata"][field] = old["metadata"][field].clone();
                    }
                }
                obj["status"] = old["status"].clone();
            } else {
                obj["metadata"]["uid"] = json!(format!("uid-{}", state.version + 1));
            }
            obj["metadata"]["generation"] = json!(generation);
            if created {
                let obj = state.store(key, obj, true);
                return reply(201, &obj);
            }
            obj
        };
        // Removing the last finalizer of an object being deleted deletes it.
        let finalized = !updated["metadata"]["deletionTimestamp"].is_null()
            && updated["metadata"]["finalizers"]
                .as_array()
                .is_none_or(|f| f.is_empty());
        let stored = state.store(key.clone(), updated, false);
        if finalized {
            state.remove_or_finalize(&key);
        }
        reply(200, &stored)
    }
}

fn key(target: &Target, name: &str) -> Key {
    (
        target.gv.clone(),
        target.plural.clone(),
        target.namespace.clone().unwrap_or_default(),
        name.to_owned(),
    )
}

impl tower::Service<Request<Body>> for FakeApi {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let api = self.clone();
        Box::pin(async move { Ok(api.handle(request).await) })
    }
}
