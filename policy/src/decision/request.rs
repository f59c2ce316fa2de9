//! The fields of an AdmissionRequest the decision reads, taken from the streamed payload.

use std::borrow::Cow;

use serde_json::Value;

use crate::payload::{Object, RequestFields, Text, TextList};

/// The fields of an AdmissionRequest the decision reads.
#[derive(Debug)]
pub struct Request<'a> {
    /// CREATE, UPDATE, DELETE or CONNECT.
    pub operation: Cow<'a, str>,
    /// `status` for the status subresource, empty for the main resource.
    pub sub_resource: Cow<'a, str>,
    /// API group of the resource.
    pub group: Cow<'a, str>,
    /// Resource (plural).
    pub resource: Cow<'a, str>,
    /// Namespace of the object.
    pub namespace: Cow<'a, str>,
    /// Requesting user.
    pub username: Cow<'a, str>,
    /// Groups of the requesting user.
    pub groups: Vec<Cow<'a, str>>,
    /// The object as it would be stored (`null` when absent).
    pub object: Value,
    /// The stored object (UPDATE and DELETE; `null` when absent).
    pub old_object: Value,
}

impl<'a> Request<'a> {
    /// Takes the fields from a parsed AdmissionRequest; the error names the first missing or
    /// wrongly typed field.
    pub(crate) fn from_fields(request: Object<RequestFields<'a>>) -> Result<Request<'a>, String> {
        let Object::Fields(req) = request else {
            return Err("request: expected a JSON object (an AdmissionRequest)".to_string());
        };
        fn text<'a>(value: Text<'a>, name: &str) -> Result<Cow<'a, str>, String> {
            match value {
                Text::Missing => Ok(Cow::Borrowed("")),
                Text::Str(s) => Ok(s),
                Text::Other => Err(format!("request.{name}: expected a string")),
            }
        }
        let operation = text(req.operation, "operation")?;
        if operation.is_empty() {
            return Err("request.operation: missing".to_string());
        }
        let sub_resource = text(req.sub_resource, "subResource")?;
        let namespace = text(req.namespace, "namespace")?;
        let (group, resource) = match req.resource {
            Object::Missing => (Cow::Borrowed(""), Cow::Borrowed("")),
            Object::Fields(r) => (text(r.group, "resource.group")?, text(r.resource, "resource.resource")?),
            Object::Other => return Err("request.resource: expected an object".to_string()),
        };
        let user = match req.user_info {
            Object::Fields(u) => u,
            Object::Missing => return Err("request.userInfo: missing".to_string()),
            Object::Other => return Err("request.userInfo: expected an object".to_string()),
        };
        let username = text(user.username, "userInfo.username")?;
        let groups = match user.groups {
            TextList::Missing => Vec::new(),
            TextList::List(groups) => groups,
            TextList::Other => return Err("request.userInfo.groups: expected a list of strings".to_string()),
        };
        Ok(Request {
            operation,
            sub_resource,
            group,
            resource,
            namespace,
            username,
            groups,
            object: req.object,
            old_object: req.old_object,
        })
    }
}
