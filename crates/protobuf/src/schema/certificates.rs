//! `k8s.io/api/certificates/v1` CertificateSigningRequest (`kubectl certificate approve`
//! and `deny` PUT it to the `approval` subresource).

use super::{field, msg, object, Kind, Message, BYTES, I32, STR, TIME};

pub(crate) static CERTIFICATE_SIGNING_REQUEST: Message = object!(
    "CertificateSigningRequest",
    &CERTIFICATE_SIGNING_REQUEST_SPEC,
    &CERTIFICATE_SIGNING_REQUEST_STATUS
);

static CERTIFICATE_SIGNING_REQUEST_SPEC: Message = Message {
    name: "CertificateSigningRequestSpec",
    fields: &[
        field(1, "request", BYTES).req(),
        field(7, "signerName", STR).req(),
        field(8, "expirationSeconds", I32).ptr(),
        field(5, "usages", STR).rep(),
        field(2, "username", STR),
        field(3, "uid", STR),
        field(4, "groups", STR).rep(),
        field(6, "extra", Kind::MapStringList),
    ],
};

static CERTIFICATE_SIGNING_REQUEST_STATUS: Message = Message {
    name: "CertificateSigningRequestStatus",
    fields: &[
        field(1, "conditions", msg(&CERTIFICATE_SIGNING_REQUEST_CONDITION)).rep(),
        field(2, "certificate", BYTES),
    ],
};

static CERTIFICATE_SIGNING_REQUEST_CONDITION: Message = Message {
    name: "CertificateSigningRequestCondition",
    fields: &[
        field(1, "type", STR).req(),
        field(6, "status", STR).req(),
        field(2, "reason", STR),
        field(3, "message", STR),
        field(4, "lastUpdateTime", TIME),
        field(5, "lastTransitionTime", TIME),
    ],
};
