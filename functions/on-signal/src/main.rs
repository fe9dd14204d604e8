use anyhow::Context;
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    gameforge_aws::telemetry::init_json();
    let settings = on_signal::settings::Settings::from_env().context("on-signal configuration")?;
    let config = gameforge_aws::config::load().await;
    let handler = on_signal::deployed_handler(&settings, &config);
    let handler = &handler;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        handler.handle(event.payload).await.map_err(lambda_runtime::Error::from)
    }))
    .await
}
