use super::uri::pct_decode_str;
use super::*;

#[test]
fn parses_rfc7512_uris() {
    let u = parse_uri("pkcs11:token=my%20hsm;object=Kexample.+013+12345;id=%01%ab;slot-id=7?module-path=/opt/x.so&pin-source=file:/p").unwrap();
    assert_eq!(u.token, "my hsm");
    assert_eq!(u.object.as_deref(), Some("Kexample.+013+12345"));
    assert_eq!(u.id.as_deref(), Some(&[1u8, 0xab][..]));
    assert_eq!(u.slot_id, Some(7));
    assert_eq!(u.module_path, "/opt/x.so");
    assert!(matches!(u.pin, PinSpec::Source(ref s) if s == "file:/p"));
    let d = parse_uri("pkcs11:token=qs").unwrap();
    assert_eq!(d.module_path, DEFAULT_MODULE);
    assert!(matches!(d.pin, PinSpec::Default));
    assert!(parse_uri("pkcs11:object=x").is_err());
    assert!(parse_uri("pkcs11:token=a;token=b").is_err());
    assert!(parse_uri("pkcs11:token=a;serial=1").is_err());
    assert!(parse_uri("pkcs11:token=%zz").is_err());
    assert!(parse_uri("pkcs11:token=a?pin-source=/p&pin-value=1").is_err());
}

#[test]
fn pin_value_never_shows() {
    let uri = "pkcs11:token=qs?module-path=/m.so&pin-value=s3cret&x=1";
    assert_eq!(public_uri(uri), "pkcs11:token=qs?module-path=/m.so&x=1");
    assert_eq!(
        public_uri("pkcs11:token=qs?pin-value=s3cret"),
        "pkcs11:token=qs"
    );
    let err = parse_uri("pkcs11:token=qs?pin-value=%zzs3cret")
        .err()
        .unwrap();
    assert!(!err.contains("s3cret"), "{err}");
    let Err(e) = Pkcs11Keystore::open("pkcs11:token=qs?pin-value=s3cret&bogus=1") else {
        panic!()
    };
    assert!(!e.to_string().contains("s3cret"), "{e}");
    let u = parse_uri("pkcs11:token=qs?pin-value=s3cret").unwrap();
    let PinSpec::Value(p) = u.pin else { panic!() };
    assert!(!format!("{p:?}").contains("s3cret"));
}

#[test]
fn percent_encoding_round_trips() {
    let s = "K ex;am?ple.+013+00042/%";
    assert_eq!(
        pct_decode_str(&pct_encode(s.as_bytes(), PATH_SAFE), "x").unwrap(),
        s
    );
    assert_eq!(pct_encode(&[1, 0xab], &[]), "%01%AB");
    assert_eq!(pct_encode(b"/usr/lib/x.so", QUERY_SAFE), "/usr/lib/x.so");
}

#[test]
fn ec_points_raw_or_der() {
    let mut raw = vec![0x04];
    raw.extend([7u8; 64]);
    let mut der = vec![0x04, 65];
    der.extend(&raw);
    assert_eq!(ec_point(&raw, 64, true), Some(&[7u8; 64][..]));
    assert_eq!(ec_point(&der, 64, true), Some(&[7u8; 64][..]));
    let mut ed = vec![0x04, 32];
    ed.extend([9u8; 32]);
    assert_eq!(ec_point(&ed, 32, false), Some(&[9u8; 32][..]));
    assert_eq!(ec_point(&ed[2..], 32, false), Some(&[9u8; 32][..]));
    assert_eq!(ec_point(&der[..60], 64, true), None);
    let mut long = vec![0x04, 0x81, 97, 0x04];
    long.extend([5u8; 96]);
    assert_eq!(ec_point(&long, 96, true), Some(&[5u8; 96][..]));
}

#[test]
fn labels_carry_algorithm_tag_and_role() {
    let zone = Name::parse(b"example.", None).unwrap();
    assert_eq!(parse_label("Kexample.+013+00042", &zone), Some((13, 42)));
    assert_eq!(parse_label("KEXAMPLE.+008+65535", &zone), Some((8, 65535)));
    assert_eq!(parse_label("Kexample.org.+013+00042", &zone), None);
    assert_eq!(parse_label("Kexample.+13+00042", &zone), None);
    let pk = vec![3u8; 64];
    for flags in [256, 257] {
        let k = DnsKey {
            flags,
            algorithm: 13,
            public_key: pk.clone(),
        };
        let back = dnskey_for_tag(Algorithm::EcdsaP256Sha256, pk.clone(), k.key_tag()).unwrap();
        assert_eq!(back, k);
    }
}

#[test]
fn cryptoki_errors_read_as_ckr_names() {
    let e = CkError::Pkcs11(RvError::PinIncorrect, cryptoki::context::Function::Login);
    assert_eq!(ck(&e), "C_Login: CKR_PIN_INCORRECT");
}
