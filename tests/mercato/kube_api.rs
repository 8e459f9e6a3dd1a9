//! A real Kubernetes API server (kube-apiserver 1.20 with etcd and kube-controller-manager, as
//! `.ci/kube.sh` starts them) seen by the tests: `kubectl` as cluster admin in a namespace of
//! the test's own, a ServiceAccount's kubeconfig with a real token, and the kubelet's part
//! (there is none: the test reports pods running and ready, so StatefulSets count them).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde_json::json;

pub struct KubeApi {
    pub admin: Client,
    admin_config: PathBuf,
    kubectl: PathBuf,
    pub namespace: String,
    /// Kubeconfigs and the logs of the processes a test starts; kept when the test fails.
    pub dir: PathBuf,
}

impl KubeApi {
    /// `None` (after saying why) unless `MERCATO_TEST_KUBE_ADMIN` names an admin kubeconfig
    /// and `MERCATO_TEST_KUBECTL` a kubectl; CI sets both (`.ci/kube.sh`).
    pub async fn connect() -> Option<KubeApi> {
        let (Some(admin_config), Some(kubectl)) = (
            std::env::var_os("MERCATO_TEST_KUBE_ADMIN"),
            std::env::var_os("MERCATO_TEST_KUBECTL"),
        ) else {
            eprintln!(
                "skipped: MERCATO_TEST_KUBE_ADMIN and MERCATO_TEST_KUBECTL are not set \
                 (`eval \"$(.ci/kube.sh /tmp/kube)\"` starts a real API server and sets them)"
            );
            return None;
        };
        let admin_config = PathBuf::from(admin_config);
        let admin = client(&admin_config).await;
        let namespace = format!(
            "mercato-it-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let api = KubeApi {
            admin,
            admin_config,
            kubectl: PathBuf::from(kubectl),
            dir: std::env::temp_dir().join(&namespace),
            namespace,
        };
        std::fs::create_dir_all(&api.dir).unwrap();
        api.kubectl_ok(&["create", "namespace", &api.namespace], None);
        Some(api)
    }

    /// `kubectl ARGS` as cluster admin in the test's namespace.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.admin_config)
            .args(["--namespace", &self.namespace])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.kubectl.display()));
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
        drop(input);
        child.wait_with_output().unwrap()
    }

    /// `kubectl ARGS`, which must succeed; its standard output.
    pub fn kubectl_ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl(args, stdin);
        assert!(
            out.status.success(),
            "kubectl {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A kubeconfig that authenticates as ServiceAccount `account` of the namespace, with a
    /// token the API server issues for it (TokenRequest), as a pod running under it would.
    pub async fn service_account_kubeconfig(&self, account: &str) -> PathBuf {
        let accounts: Api<ServiceAccount> = Api::namespaced(self.admin.clone(), &self.namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                expiration_seconds: Some(3600),
                ..TokenRequestSpec::default()
            },
            ..TokenRequest::default()
        };
        let token = accounts
            .create_token_request(account, &PostParams::default(), &request)
            .await
            .unwrap_or_else(|e| panic!("token for {account}: {e}"))
            .status
            .expect("a token")
            .token;
        let mut config: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&self.admin_config).unwrap()).unwrap();
        config["users"] =
            serde_yaml::to_value(json!([{"name": account, "user": {"token": token}}])).unwrap();
        let context = &mut config["contexts"][0]["context"];
        context["user"] = account.into();
        context["namespace"] = self.namespace.as_str().into();
        let path = self.dir.join(format!("{account}.kubeconfig"));
        std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
        path
    }

    /// The kubelet's part: every pod of the namespace that is not yet running and ready is
    /// reported so (the StatefulSet controller then counts it, and creates the next).
    pub async fn run_pods(&self) {
        let pods: Api<Pod> = Api::namespaced(self.admin.clone(), &self.namespace);
        let Ok(list) = pods.list(&ListParams::default()).await else {
            return;
        };
        for pod in list {
            let status = pod.status.unwrap_or_default();
            let ready = status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            if ready && status.phase.as_deref() == Some("Running") {
                continue;
            }
            let name = pod.metadata.name.unwrap_or_default();
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let running = json!({"status": {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}],
            }});
            // A pod deleted meanwhile is fine: the next round sees its replacement.
            let _ = pods
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&running))
                .await;
        }
    }
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "the logs of the processes are kept in {}",
                self.dir.display()
            );
            return;
        }
        let _ = self.kubectl(
            &["delete", "namespace", &self.namespace, "--wait=false"],
            None,
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn client(kubeconfig: &Path) -> Client {
    let file = Kubeconfig::read_from(kubeconfig)
        .unwrap_or_else(|e| panic!("{}: {e}", kubeconfig.display()));
    let config = Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", kubeconfig.display()));
    Client::try_from(config).unwrap()
}

/// Polls `check` every 200 ms until it answers `Some`, playing the kubelet meanwhile; panics
/// after `limit` with `what` and the last thing `check` saw (its `Err`).
pub async fn eventually<T, F, Fut>(kube: &KubeApi, what: &str, limit: Duration, check: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + limit;
    loop {
        kube.run_pods().await;
        match check().await {
            Ok(value) => return value,
            Err(seen) if Instant::now() > deadline => {
                panic!("timed out after {limit:?} waiting until {what}; last seen: {seen}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
