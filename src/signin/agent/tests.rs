use super::*;

#[test]
fn redirects_need_the_right_state() {
    let ok = Url::parse("http://app/cb?code=c1&state=s1").expect("url");
    assert_eq!(redirect_code(&ok, "s1").expect("code"), "c1");
    assert!(redirect_code(&ok, "s2").is_err());
    let refused = Url::parse("http://app/cb?error=access_denied&state=s1").expect("url");
    assert!(
        redirect_code(&refused, "s1")
            .unwrap_err()
            .to_string()
            .contains("access_denied")
    );
}
