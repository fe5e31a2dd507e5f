//! The STS query protocol, for GetCallerIdentity (Terraform's `aws_caller_identity`).

use ferrocore_sigv4::Signer;

use crate::error::{ApiError, xml_escape};
use crate::input::Input;
use crate::{ApiState, Reply};

const NAMESPACE: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

pub(crate) fn dispatch(
    state: &ApiState,
    signer: &Signer,
    input: &Input,
    request_id: &str,
) -> (&'static str, Result<Reply, ApiError>) {
    let form = input.form();
    let action = form.iter().find(|(k, _)| k == "Action").map(|(_, v)| v.as_str()).unwrap_or("");
    match action {
        "GetCallerIdentity" => ("GetCallerIdentity", Ok(Reply::Xml(caller_identity(state, signer, request_id)))),
        "" => ("unknown", Err(ApiError::invalid("The request is missing the Action parameter."))),
        _ => ("unknown", Err(ApiError::not_implemented("sts", action))),
    }
}

fn caller_identity(state: &ApiState, signer: &Signer, request_id: &str) -> String {
    let account = &state.registry.account().id;
    format!(
        "<GetCallerIdentityResponse xmlns=\"{NAMESPACE}\"><GetCallerIdentityResult><Arn>arn:aws:iam::{account}:root</Arn><UserId>{}</UserId><Account>{account}</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></GetCallerIdentityResponse>",
        xml_escape(&signer.access_key)
    )
}

/// STS names signature errors differently from the JSON services.
pub(crate) fn wire_code(code: &'static str) -> &'static str {
    match code {
        "InvalidSignatureException" => "SignatureDoesNotMatch",
        "UnrecognizedClientException" => "InvalidClientTokenId",
        "MissingAuthenticationTokenException" => "MissingAuthenticationToken",
        "IncompleteSignatureException" => "IncompleteSignature",
        "InvalidRequestException" => "InvalidParameterValue",
        other => other,
    }
}
