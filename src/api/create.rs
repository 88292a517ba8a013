//! # create
//! <https://hl7.org/fhir/R4/http.html#create>
//!
//! `POST [base]/[type]` with a resource body (`application/fhir+json`)
//!
//! - 201 with `Location: [base]/[type]/[id]/_history/1`, `ETag: W/"1"`, `Last-Modified`; the body
//!   per `Prefer: return` (representation by default, minimal, OperationOutcome)
//! - The server assigns the id; an id in the body is ignored, as the specification says.
//! - With `If-None-Exist`, a conditional create (see `conditional`).
//! - 400 malformed JSON, wrong `resourceType`, invalid content; 404 unsupported type;
//!   413 body too large; 415 not JSON

use actix_web::{web, HttpResponse};

use super::body::FhirBody;
use super::bundle::run_one;
use super::conditional::respond;
use super::context::FhirRequest;
use super::response::resource_type;
use crate::bundle::{Entry, Method, Target};
use crate::error::ApiError;
use crate::fhir::resource::parse_resource;

pub async fn create(
    ctx: FhirRequest,
    req: actix_web::HttpRequest,
    path: web::Path<(String, String)>,
    body: FhirBody,
) -> Result<HttpResponse, ApiError> {
    let (_, type_name) = path.into_inner();
    let rtype = resource_type(&type_name)?;
    if let Some(condition) = req.headers().get("if-none-exist") {
        let condition = condition
            .to_str()
            .map_err(|_| ApiError::InvalidHeader {
                name: "If-None-Exist",
                reason: "must be a search query".into(),
            })?
            .to_owned();
        return super::conditional::create(ctx, rtype, condition, &body).await;
    }
    let content = parse_resource(&body, rtype)?;
    let entry = Entry {
        index: 0,
        full_url: None,
        method: Method::Post,
        target: Target::Type(rtype),
        resource: Some(content),
        if_none_exist: None,
        if_match: None,
        if_none_match: None,
    };
    let result = run_one(&ctx, entry).await?;
    Ok(respond(&ctx, rtype, &result))
}
