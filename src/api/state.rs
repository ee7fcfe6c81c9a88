//! Shared state handed to every handler: the application, built once by [`crate::app::App`].

use std::ops::Deref;
use std::sync::Arc;

use crate::app::App;

/// The application as handlers see it; cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState(pub Arc<App>);

impl Deref for AppState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.0
    }
}

impl From<Arc<App>> for AppState {
    fn from(app: Arc<App>) -> Self {
        Self(app)
    }
}
