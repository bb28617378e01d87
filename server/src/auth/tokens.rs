//! Access tokens: short-lived JWTs (HS256) naming the user, tenant, role, location,
//! session and device. Validation pins the algorithm, and checks the signature,
//! expiry, issuer and audience; `alg: none` and every other algorithm are refused
//! by construction (the decoder accepts HS256 only).

use std::time::Duration;

use crewsync_core::ids::{ClientId, DeviceId, LocationId, UserId};
use crewsync_core::model::Role;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Who issues tokens, and for whom.
pub const ISSUER: &str = "crewsync";
pub const AUDIENCE: &str = "crewsync-api";

/// How long an access token lives: short, because a refresh is cheap and a
/// deactivated user should lose access soon even where a check is skipped.
pub const ACCESS_TTL: Duration = Duration::from_secs(15 * 60);

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The user.
    pub sub: UserId,
    /// The tenant (the seed's client).
    pub tid: ClientId,
    pub role: Role,
    /// The user's location.
    pub loc: LocationId,
    /// The session (the seed's MobileSession) the token belongs to.
    pub sid: Uuid,
    /// The registered device.
    pub dev: DeviceId,
    pub iat: i64,
    pub exp: i64,
}

/// Why a token was refused. The message names the reason, never key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("missing bearer token")]
    Missing,
    #[error("token expired")]
    Expired,
    #[error("token signature does not verify")]
    BadSignature,
    #[error("token algorithm not accepted (HS256 only)")]
    BadAlgorithm,
    #[error("token is for another audience")]
    BadAudience,
    #[error("token is from another issuer")]
    BadIssuer,
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("cannot sign a token: {0}")]
    Signing(String),
}

/// The server's signing key (shared by every server on one database).
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKeys(..)")
    }
}

impl TokenKeys {
    pub fn from_secret(secret: &[u8]) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        }
    }

    /// Signs an access token for these claims.
    pub fn issue(&self, claims: &Claims) -> Result<String, TokenError> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|e| TokenError::Signing(e.to_string()))
    }

    /// Checks a token and returns its claims.
    pub fn validate(&self, token: &str) -> Result<Claims, TokenError> {
        // The header is read first so that `alg: none` (which the decoder cannot
        // even parse) is reported as the refused algorithm it is.
        if header_algorithm(token)?.as_deref() != Some("HS256") {
            return Err(TokenError::BadAlgorithm);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 5;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    TokenError::BadAlgorithm
                }
                ErrorKind::InvalidAudience => TokenError::BadAudience,
                ErrorKind::InvalidIssuer => TokenError::BadIssuer,
                other => TokenError::Malformed(format!("{other:?}")),
            })
    }
}

/// The `alg` a token's header names.
fn header_algorithm(token: &str) -> Result<Option<String>, TokenError> {
    use base64::Engine;
    #[derive(Deserialize)]
    struct AlgorithmOnly {
        alg: Option<String>,
    }
    let header = token
        .split('.')
        .next()
        .filter(|part| !part.is_empty())
        .ok_or_else(|| TokenError::Malformed("no header".to_owned()))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| TokenError::Malformed("header is not base64url".to_owned()))?;
    let parsed: AlgorithmOnly = serde_json::from_slice(&bytes)
        .map_err(|_| TokenError::Malformed("header is not JSON".to_owned()))?;
    Ok(parsed.alg)
}

/// Claims for a new access token, valid from now for [`ACCESS_TTL`].
pub fn claims_for(
    user: UserId,
    tenant: ClientId,
    role: Role,
    location: LocationId,
    session: Uuid,
    device: DeviceId,
) -> Claims {
    let now = chrono::Utc::now().timestamp();
    Claims {
        iss: ISSUER.to_owned(),
        aud: AUDIENCE.to_owned(),
        sub: user,
        tid: tenant,
        role,
        loc: location,
        sid: session,
        dev: device,
        iat: now,
        exp: now + ACCESS_TTL.as_secs() as i64,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    fn claims() -> Claims {
        claims_for(
            UserId::new(),
            ClientId::new(),
            Role::Driver,
            LocationId::new(),
            Uuid::now_v7(),
            DeviceId::new(),
        )
    }

    fn keys() -> TokenKeys {
        TokenKeys::from_secret(b"0123456789abcdef0123456789abcdef")
    }

    /// A token with a hand-made header and claims and the given signature part.
    fn forge(header: &str, claims: &Claims, signature: &str) -> String {
        let encode = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        format!(
            "{}.{}.{signature}",
            encode(header.as_bytes()),
            encode(&serde_json::to_vec(claims).unwrap())
        )
    }

    #[test]
    fn a_fresh_token_validates_to_its_claims() {
        let claims = claims();
        let token = keys().issue(&claims).unwrap();
        assert_eq!(keys().validate(&token).unwrap(), claims);
    }

    #[test]
    fn forged_and_stale_tokens_are_refused_with_their_reason() {
        let good = claims();
        let keys = keys();
        let other = TokenKeys::from_secret(b"another secret, another server!!");
        assert_eq!(
            keys.validate(&other.issue(&good).unwrap()),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            keys.validate(&forge(r#"{"alg":"none","typ":"JWT"}"#, &good, "")),
            Err(TokenError::BadAlgorithm)
        );
        assert_eq!(
            keys.validate(&forge(r#"{"alg":"HS512","typ":"JWT"}"#, &good, "AAAA")),
            Err(TokenError::BadAlgorithm)
        );
        let expired = Claims {
            exp: good.iat - 3_600,
            ..good.clone()
        };
        assert_eq!(
            keys.validate(&keys.issue(&expired).unwrap()),
            Err(TokenError::Expired)
        );
        let audience = Claims {
            aud: "someone-else".into(),
            ..good.clone()
        };
        assert_eq!(
            keys.validate(&keys.issue(&audience).unwrap()),
            Err(TokenError::BadAudience)
        );
        let issuer = Claims {
            iss: "evil".into(),
            ..good.clone()
        };
        assert_eq!(
            keys.validate(&keys.issue(&issuer).unwrap()),
            Err(TokenError::BadIssuer)
        );
        // A claim edited after signing (another tenant) breaks the signature.
        let token = keys.issue(&good).unwrap();
        let signature = token.rsplit('.').next().unwrap();
        let edited = Claims {
            tid: ClientId::new(),
            ..good.clone()
        };
        assert_eq!(
            keys.validate(&forge(r#"{"alg":"HS256","typ":"JWT"}"#, &edited, signature)),
            Err(TokenError::BadSignature)
        );
        assert!(matches!(
            keys.validate("not.a.token"),
            Err(TokenError::Malformed(_))
        ));
    }
}
