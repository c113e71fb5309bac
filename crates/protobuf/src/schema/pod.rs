//! `k8s.io/api/core/v1` pod messages: Pod, PodTemplateSpec, PodSpec, Container and
//! everything they hold except volumes (see `volume.rs`) and status (see `pod_status.rs`).

use super::core::LOCAL_OBJECT_REFERENCE;
use super::meta::{LABEL_SELECTOR, OBJECT_META};
use super::pod_status::POD_STATUS;
use super::volume::VOLUME;
use super::{field, msg, object, Message, BOOL, I32, I64, INT_OR_STR, MAP_QTY, MAP_STR, QTY, STR};

pub(crate) static POD: Message = object!("Pod", &POD_SPEC, &POD_STATUS);

pub(crate) static POD_TEMPLATE_SPEC: Message = Message {
    name: "PodTemplateSpec",
    fields: &[
        field(1, "metadata", msg(&OBJECT_META)),
        field(2, "spec", msg(&POD_SPEC)),
    ],
};

pub(crate) static POD_SPEC: Message = Message {
    name: "PodSpec",
    fields: &[
        field(1, "volumes", msg(&VOLUME)).rep(),
        field(20, "initContainers", msg(&CONTAINER)).rep(),
        field(2, "containers", msg(&CONTAINER)).rep().req(),
        field(34, "ephemeralContainers", msg(&EPHEMERAL_CONTAINER)).rep(),
        field(3, "restartPolicy", STR),
        field(4, "terminationGracePeriodSeconds", I64).ptr(),
        field(5, "activeDeadlineSeconds", I64).ptr(),
        field(6, "dnsPolicy", STR),
        field(7, "nodeSelector", MAP_STR),
        field(8, "serviceAccountName", STR),
        field(9, "serviceAccount", STR),
        field(21, "automountServiceAccountToken", BOOL).ptr(),
        field(10, "nodeName", STR),
        field(11, "hostNetwork", BOOL),
        field(12, "hostPID", BOOL),
        field(13, "hostIPC", BOOL),
        field(27, "shareProcessNamespace", BOOL).ptr(),
        field(14, "securityContext", msg(&POD_SECURITY_CONTEXT)).ptr(),
        field(15, "imagePullSecrets", msg(&LOCAL_OBJECT_REFERENCE)).rep(),
        field(16, "hostname", STR),
        field(17, "subdomain", STR),
        field(18, "affinity", msg(&AFFINITY)).ptr(),
        field(19, "schedulerName", STR),
        field(22, "tolerations", msg(&TOLERATION)).rep(),
        field(23, "hostAliases", msg(&HOST_ALIAS)).rep(),
        field(24, "priorityClassName", STR),
        field(25, "priority", I32).ptr(),
        field(26, "dnsConfig", msg(&POD_DNS_CONFIG)).ptr(),
        field(28, "readinessGates", msg(&POD_READINESS_GATE)).rep(),
        field(29, "runtimeClassName", STR).ptr(),
        field(30, "enableServiceLinks", BOOL).ptr(),
        field(31, "preemptionPolicy", STR).ptr(),
        field(32, "overhead", MAP_QTY),
        field(
            33,
            "topologySpreadConstraints",
            msg(&TOPOLOGY_SPREAD_CONSTRAINT),
        )
        .rep(),
        field(35, "setHostnameAsFQDN", BOOL).ptr(),
        field(36, "os", msg(&POD_OS)).ptr(),
        field(37, "hostUsers", BOOL).ptr(),
        field(38, "schedulingGates", msg(&POD_SCHEDULING_GATE)).rep(),
        field(39, "resourceClaims", msg(&POD_RESOURCE_CLAIM)).rep(),
        field(40, "resources", msg(&RESOURCE_REQUIREMENTS)).ptr(),
    ],
};

/// `Container`; `EphemeralContainerCommon` has the same fields and numbers.
pub(crate) static CONTAINER: Message = Message {
    name: "Container",
    fields: &[
        field(1, "name", STR).req(),
        field(2, "image", STR),
        field(3, "command", STR).rep(),
        field(4, "args", STR).rep(),
        field(5, "workingDir", STR),
        field(6, "ports", msg(&CONTAINER_PORT)).rep(),
        field(19, "envFrom", msg(&ENV_FROM_SOURCE)).rep(),
        field(7, "env", msg(&ENV_VAR)).rep(),
        field(8, "resources", msg(&RESOURCE_REQUIREMENTS)),
        field(23, "resizePolicy", msg(&CONTAINER_RESIZE_POLICY)).rep(),
        field(24, "restartPolicy", STR).ptr(),
        field(9, "volumeMounts", msg(&VOLUME_MOUNT)).rep(),
        field(21, "volumeDevices", msg(&VOLUME_DEVICE)).rep(),
        field(10, "livenessProbe", msg(&PROBE)).ptr(),
        field(11, "readinessProbe", msg(&PROBE)).ptr(),
        field(22, "startupProbe", msg(&PROBE)).ptr(),
        field(12, "lifecycle", msg(&LIFECYCLE)).ptr(),
        field(13, "terminationMessagePath", STR),
        field(20, "terminationMessagePolicy", STR),
        field(14, "imagePullPolicy", STR),
        field(15, "securityContext", msg(&SECURITY_CONTEXT)).ptr(),
        field(16, "stdin", BOOL),
        field(17, "stdinOnce", BOOL),
        field(18, "tty", BOOL),
    ],
};

static EPHEMERAL_CONTAINER: Message = Message {
    name: "EphemeralContainer",
    fields: &[
        field(1, "ephemeralContainerCommon", msg(&CONTAINER)).inline(),
        field(2, "targetContainerName", STR),
    ],
};

static CONTAINER_PORT: Message = Message {
    name: "ContainerPort",
    fields: &[
        field(1, "name", STR),
        field(2, "hostPort", I32),
        field(3, "containerPort", I32).req(),
        field(4, "protocol", STR),
        field(5, "hostIP", STR),
    ],
};

static CONTAINER_RESIZE_POLICY: Message = Message {
    name: "ContainerResizePolicy",
    fields: &[
        field(1, "resourceName", STR).req(),
        field(2, "restartPolicy", STR).req(),
    ],
};

static ENV_FROM_SOURCE: Message = Message {
    name: "EnvFromSource",
    fields: &[
        field(1, "prefix", STR),
        field(2, "configMapRef", msg(&CONFIG_MAP_ENV_SOURCE)).ptr(),
        field(3, "secretRef", msg(&SECRET_ENV_SOURCE)).ptr(),
    ],
};

static CONFIG_MAP_ENV_SOURCE: Message = Message {
    name: "ConfigMapEnvSource",
    fields: &[
        field(1, "localObjectReference", msg(&LOCAL_OBJECT_REFERENCE)).inline(),
        field(2, "optional", BOOL).ptr(),
    ],
};

static SECRET_ENV_SOURCE: Message = Message {
    name: "SecretEnvSource",
    fields: &[
        field(1, "localObjectReference", msg(&LOCAL_OBJECT_REFERENCE)).inline(),
        field(2, "optional", BOOL).ptr(),
    ],
};

static ENV_VAR: Message = Message {
    name: "EnvVar",
    fields: &[
        field(1, "name", STR).req(),
        field(2, "value", STR),
        field(3, "valueFrom", msg(&ENV_VAR_SOURCE)).ptr(),
    ],
};

static ENV_VAR_SOURCE: Message = Message {
    name: "EnvVarSource",
    fields: &[
        field(1, "fieldRef", msg(&OBJECT_FIELD_SELECTOR)).ptr(),
        field(2, "resourceFieldRef", msg(&RESOURCE_FIELD_SELECTOR)).ptr(),
        field(3, "configMapKeyRef", msg(&CONFIG_MAP_KEY_SELECTOR)).ptr(),
        field(4, "secretKeyRef", msg(&SECRET_KEY_SELECTOR)).ptr(),
    ],
};

pub(crate) static OBJECT_FIELD_SELECTOR: Message = Message {
    name: "ObjectFieldSelector",
    fields: &[
        field(1, "apiVersion", STR),
        field(2, "fieldPath", STR).req(),
    ],
};

pub(crate) static RESOURCE_FIELD_SELECTOR: Message = Message {
    name: "ResourceFieldSelector",
    fields: &[
        field(1, "containerName", STR),
        field(2, "resource", STR).req(),
        field(3, "divisor", QTY),
    ],
};

static CONFIG_MAP_KEY_SELECTOR: Message = Message {
    name: "ConfigMapKeySelector",
    fields: &[
        field(1, "localObjectReference", msg(&LOCAL_OBJECT_REFERENCE)).inline(),
        field(2, "key", STR).req(),
        field(3, "optional", BOOL).ptr(),
    ],
};

static SECRET_KEY_SELECTOR: Message = Message {
    name: "SecretKeySelector",
    fields: &[
        field(1, "localObjectReference", msg(&LOCAL_OBJECT_REFERENCE)).inline(),
        field(2, "key", STR).req(),
        field(3, "optional", BOOL).ptr(),
    ],
};

pub(crate) static RESOURCE_REQUIREMENTS: Message = Message {
    name: "ResourceRequirements",
    fields: &[
        field(1, "limits", MAP_QTY),
        field(2, "requests", MAP_QTY),
        field(3, "claims", msg(&RESOURCE_CLAIM)).rep(),
    ],
};

static RESOURCE_CLAIM: Message = Message {
    name: "ResourceClaim",
    fields: &[field(1, "name", STR).req(), field(2, "request", STR)],
};

static VOLUME_MOUNT: Message = Message {
    name: "VolumeMount",
    fields: &[
        field(1, "name", STR).req(),
        field(2, "readOnly", BOOL),
        field(7, "recursiveReadOnly", STR).ptr(),
        field(3, "mountPath", STR).req(),
        field(4, "subPath", STR),
        field(5, "mountPropagation", STR).ptr(),
        field(6, "subPathExpr", STR),
    ],
};

static VOLUME_DEVICE: Message = Message {
    name: "VolumeDevice",
    fields: &[
        field(1, "name", STR).req(),
        field(2, "devicePath", STR).req(),
    ],
};

static PROBE: Message = Message {
    name: "Probe",
    fields: &[
        field(1, "handler", msg(&PROBE_HANDLER)).inline(),
        field(2, "initialDelaySeconds", I32),
        field(3, "timeoutSeconds", I32),
        field(4, "periodSeconds", I32),
        field(5, "successThreshold", I32),
        field(6, "failureThreshold", I32),
        field(7, "terminationGracePeriodSeconds", I64).ptr(),
    ],
};

static PROBE_HANDLER: Message = Message {
    name: "ProbeHandler",
    fields: &[
        field(1, "exec", msg(&EXEC_ACTION)).ptr(),
        field(2, "httpGet", msg(&HTTP_GET_ACTION)).ptr(),
        field(3, "tcpSocket", msg(&TCP_SOCKET_ACTION)).ptr(),
        field(4, "grpc", msg(&GRPC_ACTION)).ptr(),
    ],
};

static EXEC_ACTION: Message = Message {
    name: "ExecAction",
    fields: &[field(1, "command", STR).rep()],
};

static HTTP_GET_ACTION: Message = Message {
    name: "HTTPGetAction",
    fields: &[
        field(1, "path", STR),
        field(2, "port", INT_OR_STR),
        field(3, "host", STR),
        field(4, "scheme", STR),
        field(5, "httpHeaders", msg(&HTTP_HEADER)).rep(),
    ],
};

static HTTP_HEADER: Message = Message {
    name: "HTTPHeader",
    fields: &[field(1, "name", STR).req(), field(2, "value", STR).req()],
};

static TCP_SOCKET_ACTION: Message = Message {
    name: "TCPSocketAction",
    fields: &[field(1, "port", INT_OR_STR), field(2, "host", STR)],
};

static GRPC_ACTION: Message = Message {
    name: "GRPCAction",
    fields: &[field(1, "port", I32).req(), field(2, "service", STR).ptr()],
};

static LIFECYCLE: Message = Message {
    name: "Lifecycle",
    fields: &[
        field(1, "postStart", msg(&LIFECYCLE_HANDLER)).ptr(),
        field(2, "preStop", msg(&LIFECYCLE_HANDLER)).ptr(),
        field(3, "stopSignal", STR).ptr(),
    ],
};

static LIFECYCLE_HANDLER: Message = Message {
    name: "LifecycleHandler",
    fields: &[
        field(1, "exec", msg(&EXEC_ACTION)).ptr(),
        field(2, "httpGet", msg(&HTTP_GET_ACTION)).ptr(),
        field(3, "tcpSocket", msg(&TCP_SOCKET_ACTION)).ptr(),
        field(4, "sleep", msg(&SLEEP_ACTION)).ptr(),
    ],
};

static SLEEP_ACTION: Message = Message {
    name: "SleepAction",
    fields: &[field(1, "seconds", I64).req()],
};

static SECURITY_CONTEXT: Message = Message {
    name: "SecurityContext",
    fields: &[
        field(1, "capabilities", msg(&CAPABILITIES)).ptr(),
        field(2, "privileged", BOOL).ptr(),
        field(3, "seLinuxOptions", msg(&SE_LINUX_OPTIONS)).ptr(),
        field(10, "windowsOptions", msg(&WINDOWS_SECURITY_CONTEXT_OPTIONS)).ptr(),
        field(4, "runAsUser", I64).ptr(),
        field(8, "runAsGroup", I64).ptr(),
        field(5, "runAsNonRoot", BOOL).ptr(),
        field(6, "readOnlyRootFilesystem", BOOL).ptr(),
        field(7, "allowPrivilegeEscalation", BOOL).ptr(),
        field(9, "procMount", STR).ptr(),
        field(11, "seccompProfile", msg(&SECCOMP_PROFILE)).ptr(),
        field(12, "appArmorProfile", msg(&APP_ARMOR_PROFILE)).ptr(),
    ],
};

static CAPABILITIES: Message = Message {
    name: "Capabilities",
    fields: &[field(1, "add", STR).rep(), field(2, "drop", STR).rep()],
};

static SE_LINUX_OPTIONS: Message = Message {
    name: "SELinuxOptions",
    fields: &[
        field(1, "user", STR),
        field(2, "role", STR),
        field(3, "type", STR),
        field(4, "level", STR),
    ],
};

static WINDOWS_SECURITY_CONTEXT_OPTIONS: Message = Message {
    name: "WindowsSecurityContextOptions",
    fields: &[
        field(1, "gmsaCredentialSpecName", STR).ptr(),
        field(2, "gmsaCredentialSpec", STR).ptr(),
        field(3, "runAsUserName", STR).ptr(),
        field(4, "hostProcess", BOOL).ptr(),
    ],
};

static SECCOMP_PROFILE: Message = Message {
    name: "SeccompProfile",
    fields: &[
        field(1, "type", STR).req(),
        field(2, "localhostProfile", STR).ptr(),
    ],
};

static APP_ARMOR_PROFILE: Message = Message {
    name: "AppArmorProfile",
    fields: &[
        field(1, "type", STR).req(),
        field(2, "localhostProfile", STR).ptr(),
    ],
};

static POD_SECURITY_CONTEXT: Message = Message {
    name: "PodSecurityContext",
    fields: &[
        field(1, "seLinuxOptions", msg(&SE_LINUX_OPTIONS)).ptr(),
        field(8, "windowsOptions", msg(&WINDOWS_SECURITY_CONTEXT_OPTIONS)).ptr(),
        field(2, "runAsUser", I64).ptr(),
        field(6, "runAsGroup", I64).ptr(),
        field(3, "runAsNonRoot", BOOL).ptr(),
        field(4, "supplementalGroups", I64).rep(),
        field(12, "supplementalGroupsPolicy", STR).ptr(),
        field(5, "fsGroup", I64).ptr(),
        field(7, "sysctls", msg(&SYSCTL)).rep(),
        field(9, "fsGroupChangePolicy", STR).ptr(),
        field(10, "seccompProfile", msg(&SECCOMP_PROFILE)).ptr(),
        field(11, "appArmorProfile", msg(&APP_ARMOR_PROFILE)).ptr(),
        field(13, "seLinuxChangePolicy", STR).ptr(),
    ],
};

static SYSCTL: Message = Message {
    name: "Sysctl",
    fields: &[field(1, "name", STR).req(), field(2, "value", STR).req()],
};

static POD_DNS_CONFIG: Message = Message {
    name: "PodDNSConfig",
    fields: &[
        field(1, "nameservers", STR).rep(),
        field(2, "searches", STR).rep(),
        field(3, "options", msg(&POD_DNS_CONFIG_OPTION)).rep(),
    ],
};

static POD_DNS_CONFIG_OPTION: Message = Message {
    name: "PodDNSConfigOption",
    fields: &[field(1, "name", STR), field(2, "value", STR).ptr()],
};

static TOLERATION: Message = Message {
    name: "Toleration",
    fields: &[
        field(1, "key", STR),
        field(2, "operator", STR),
        field(3, "value", STR),
        field(4, "effect", STR),
        field(5, "tolerationSeconds", I64).ptr(),
    ],
};

static HOST_ALIAS: Message = Message {
    name: "HostAlias",
    fields: &[field(1, "ip", STR).req(), field(2, "hostnames", STR).rep()],
};

static POD_READINESS_GATE: Message = Message {
    name: "PodReadinessGate",
    fields: &[field(1, "conditionType", STR).req()],
};

static POD_OS: Message = Message {
    name: "PodOS",
    fields: &[field(1, "name", STR).req()],
};

static POD_SCHEDULING_GATE: Message = Message {
    name: "PodSchedulingGate",
    fields: &[field(1, "name", STR).req()],
};

static POD_RESOURCE_CLAIM: Message = Message {
    name: "PodResourceClaim",
    fields: &[
        field(1, "name", STR).req(),
        field(3, "resourceClaimName", STR).ptr(),
        field(4, "resourceClaimTemplateName", STR).ptr(),
    ],
};

static TOPOLOGY_SPREAD_CONSTRAINT: Message = Message {
    name: "TopologySpreadConstraint",
    fields: &[
        field(1, "maxSkew", I32).req(),
        field(2, "topologyKey", STR).req(),
        field(3, "whenUnsatisfiable", STR).req(),
        field(4, "labelSelector", msg(&LABEL_SELECTOR)).ptr(),
        field(5, "minDomains", I32).ptr(),
        field(6, "nodeAffinityPolicy", STR).ptr(),
        field(7, "nodeTaintsPolicy", STR).ptr(),
        field(8, "matchLabelKeys", STR).rep(),
    ],
};

static AFFINITY: Message = Message {
    name: "Affinity",
    fields: &[
        field(1, "nodeAffinity", msg(&NODE_AFFINITY)).ptr(),
        field(2, "podAffinity", msg(&POD_AFFINITY)).ptr(),
        field(3, "podAntiAffinity", msg(&POD_ANTI_AFFINITY)).ptr(),
    ],
};

static NODE_AFFINITY: Message = Message {
    name: "NodeAffinity",
    fields: &[
        field(
            1,
            "requiredDuringSchedulingIgnoredDuringExecution",
            msg(&NODE_SELECTOR),
        )
        .ptr(),
        field(
            2,
            "preferredDuringSchedulingIgnoredDuringExecution",
            msg(&PREFERRED_SCHEDULING_TERM),
        )
        .rep(),
    ],
};

static NODE_SELECTOR: Message = Message {
    name: "NodeSelector",
    fields: &[field(1, "nodeSelectorTerms", msg(&NODE_SELECTOR_TERM))
        .rep()
        .req()],
};

static NODE_SELECTOR_TERM: Message = Message {
    name: "NodeSelectorTerm",
    fields: &[
        field(1, "matchExpressions", msg(&NODE_SELECTOR_REQUIREMENT)).rep(),
        field(2, "matchFields", msg(&NODE_SELECTOR_REQUIREMENT)).rep(),
    ],
};

static NODE_SELECTOR_REQUIREMENT: Message = Message {
    name: "NodeSelectorRequirement",
    fields: &[
        field(1, "key", STR).req(),
        field(2, "operator", STR).req(),
        field(3, "values", STR).rep(),
    ],
};

static PREFERRED_SCHEDULING_TERM: Message = Message {
    name: "PreferredSchedulingTerm",
    fields: &[
        field(1, "weight", I32).req(),
        field(2, "preference", msg(&NODE_SELECTOR_TERM)),
    ],
};

static POD_AFFINITY: Message = Message {
    name: "PodAffinity",
    fields: &[
        field(
            1,
            "requiredDuringSchedulingIgnoredDuringExecution",
            msg(&POD_AFFINITY_TERM),
        )
        .rep(),
        field(
            2,
            "preferredDuringSchedulingIgnoredDuringExecution",
            msg(&WEIGHTED_POD_AFFINITY_TERM),
        )
        .rep(),
    ],
};

static POD_ANTI_AFFINITY: Message = Message {
    name: "PodAntiAffinity",
    fields: &[
        field(
            1,
            "requiredDuringSchedulingIgnoredDuringExecution",
            msg(&POD_AFFINITY_TERM),
        )
        .rep(),
        field(
            2,
            "preferredDuringSchedulingIgnoredDuringExecution",
            msg(&WEIGHTED_POD_AFFINITY_TERM),
        )
        .rep(),
    ],
};

static POD_AFFINITY_TERM: Message = Message {
    name: "PodAffinityTerm",
    fields: &[
        field(1, "labelSelector", msg(&LABEL_SELECTOR)).ptr(),
        field(2, "namespaces", STR).rep(),
        field(3, "topologyKey", STR).req(),
        field(4, "namespaceSelector", msg(&LABEL_SELECTOR)).ptr(),
        field(5, "matchLabelKeys", STR).rep(),
        field(6, "mismatchLabelKeys", STR).rep(),
    ],
};

static WEIGHTED_POD_AFFINITY_TERM: Message = Message {
    name: "WeightedPodAffinityTerm",
    fields: &[
        field(1, "weight", I32).req(),
        field(2, "podAffinityTerm", msg(&POD_AFFINITY_TERM)),
    ],
};
