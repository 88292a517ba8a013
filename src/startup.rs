//! Builds the application from settings: the database, the shared state, the HTTP server.
//! Tests build the very same app through [`app`].

use std::net::TcpListener;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::{from_fn, Logger, NormalizePath, TrailingSlash};
use actix_web::{web, App, HttpServer};

use crate::api::{self, AppState};
use crate::fhir::definitions::DefinitionError;
use crate::settings::Settings;
use crate::store::{Database, StoreError};
use crate::validation::Validator;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Definitions(#[from] DefinitionError),
    #[error(transparent)]
    Keys(#[from] crate::auth::keys::KeyError),
}

/// Loads the FHIR definitions, opens and migrates the database, and builds the shared state.
pub fn build_state(settings: Settings) -> Result<web::Data<AppState>, StartupError> {
    let validator = Validator::new()?;
    let verifier = crate::auth::keys::Verifier::new(&settings.keys())?;
    let db = Database::open(&settings.database_url, settings.db_pool_size)?;
    Ok(web::Data::new(AppState::new(
        db, settings, validator, verifier,
    )))
}

/// The application: routes, request ids, access log (path only: query strings can carry patient
/// identifiers), trailing-slash normalisation.
pub fn app(
    state: web::Data<AppState>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(state)
        .configure(api::configure)
        .wrap(from_fn(api::request_id_middleware))
        .wrap(
            Logger::new("%{x-request-id}o %a \"%{method}xi %U\" %s %b %Dms")
                .custom_request_replace("method", |req| req.method().to_string()),
        )
        .wrap(NormalizePath::new(TrailingSlash::Trim))
}

/// Serves on `listener` (bound by the caller, so tests can use port 0); await the server to run it.
pub fn server(state: web::Data<AppState>, listener: TcpListener) -> std::io::Result<Server> {
    let workers = state.settings.workers;
    let factory = move || app(state.clone());
    let mut server = HttpServer::new(factory);
    if workers > 0 {
        server = server.workers(workers);
    }
    Ok(server.listen(listener)?.run())
}
