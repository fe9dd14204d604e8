// The instrumented invocation future nests the handler's futures deeper than the default limit allows.
#![recursion_limit = "256"]

use anyhow::Context;
use lambda_runtime::{LambdaEvent, service_fn};
use submit::http::{Answer, LambdaFunctionUrlRequest, LambdaFunctionUrlResponse};
use tracing::Instrument;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    gameforge_aws::telemetry::init_json("submit");
    let settings = submit::settings::Settings::from_env().context("submit configuration")?;
    let config = gameforge_aws::config::load().await;
    let handler = submit::deployed_handler(&settings, &config);
    let handler = &handler;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let span = gameforge_aws::telemetry::invocation_span(
            &event.context.request_id,
            event.context.xray_trace_id.as_deref(),
        );
        async move {
            // A payload that is not a function URL request is answered, not failed: a URL caller gets a 400.
            let response = match serde_json::from_value::<LambdaFunctionUrlRequest>(event.payload) {
                Ok(request) => handler.handle(&request).await,
                Err(e) => LambdaFunctionUrlResponse::error(400, format!("not a function URL request: {e}")),
            };
            Ok::<LambdaFunctionUrlResponse, lambda_runtime::Error>(response)
        }
        .instrument(span)
    }))
    .await
}
