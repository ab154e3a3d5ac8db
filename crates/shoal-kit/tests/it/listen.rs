//! `listen()`: a taken port is an error naming the address.

#[tokio::test]
async fn a_taken_port_is_a_clear_error() {
    let taken = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = taken.local_addr().unwrap().port();
    // `PORT` is not set by the test runner; the default port is what is tried.
    if std::env::var_os("PORT").is_some() {
        eprintln!("NOT RUN: a_taken_port_is_a_clear_error: `PORT` is set in the environment");
        return;
    }
    let err = shoal_kit::listen(port).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("cannot listen on `0.0.0.0:{port}`")
    );
    assert!(std::error::Error::source(&err).is_some());
    let listener = shoal_kit::listen(0).await.unwrap();
    assert!(listener.local_addr().unwrap().ip().is_unspecified());
}
