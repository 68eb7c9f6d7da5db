use super::*;

#[test]
fn login_forms_are_read_with_hidden_fields() {
    let html = r#"<main><form method="post" action="/login?x=1&amp;y=2"><input type="hidden" name="csrf" value="a&quot;b">
        <label>User <input id="u" name="username" autocomplete="username"></label>
        <input type="password" name="password"><button>Sign in</button></form></main>"#;
    let form = Form::parse(html).expect("form");
    assert_eq!(form.action, "/login?x=1&y=2");
    assert_eq!(
        form.fields,
        vec![
            ("csrf".into(), "a\"b".into()),
            ("username".into(), String::new()),
            ("password".into(), String::new())
        ]
    );
    assert!(Form::parse("<p>no form</p>").is_none());
}
