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

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};

use super::body::FhirBody;
use super::context::FhirRequest;
use super::response::{resource_type, validate, write_error, written};
use crate::error::ApiError;
use crate::fhir::resource::parse_resource;
use crate::store::resources;

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
    let mut content = parse_resource(&body, rtype)?;
    // shift_remove keeps the order of the other elements (remove would swap the last one in).
    content.shift_remove("id");
    let (content, derived) = validate(&ctx, rtype, content)?;
    let system_id = ctx.system_id;
    let result = ctx
        .state
        .db
        .run(move |conn| {
            Ok::<_, ApiError>(resources::create(conn, system_id, rtype, content, &derived))
        })
        .await?;
    let written_resource = result.map_err(|e| write_error(e, rtype, None))?;
    Ok(written(
        &ctx,
        StatusCode::CREATED,
        rtype,
        &written_resource.id,
        &written_resource.stored,
        "Created",
    ))
}
