use anyhow::Context;
use lambda_runtime::{LambdaEvent, service_fn};
use submit::http::{Request, Response};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    gameforge_aws::telemetry::init_json();
    let settings = submit::settings::Settings::from_env().context("submit configuration")?;
    let config = gameforge_aws::config::load().await;
    let handler = submit::deployed_handler(&settings, &config);
    let handler = &handler;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        // A payload that is not a function URL request is answered, not failed: a URL caller gets a 400.
        let response = match serde_json::from_value::<Request>(event.payload) {
            Ok(request) => handler.handle(&request).await,
            Err(e) => Response::error(400, format!("not a function URL request: {e}")),
        };
        Ok::<Response, lambda_runtime::Error>(response)
    }))
    .await
}
