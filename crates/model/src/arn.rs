//! ARNs of AWS IoT resources: `arn:aws:iot:<region>:<account>:<kind>/<name>`.

use crate::{Account, Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    Thing,
    ThingType,
    ThingGroup,
    BillingGroup,
    Certificate,
    CaCertificate,
    Policy,
    RoleAlias,
    TopicRule,
    /// Data-plane resources that policies name and no record stands for.
    Client,
    Topic,
    TopicFilter,
}

impl ResourceKind {
    /// The resource-type word in the ARN.
    pub fn arn_word(self) -> &'static str {
        match self {
            Self::Thing => "thing",
            Self::ThingType => "thingtype",
            Self::ThingGroup => "thinggroup",
            Self::BillingGroup => "billinggroup",
            Self::Certificate => "cert",
            Self::CaCertificate => "cacert",
            Self::Policy => "policy",
            Self::RoleAlias => "rolealias",
            Self::TopicRule => "rule",
            Self::Client => "client",
            Self::Topic => "topic",
            Self::TopicFilter => "topicfilter",
        }
    }

    /// The ARN of the resource of this kind named `name` in `account`.
    pub fn arn(self, name: &str, account: &Account) -> String {
        format!("arn:aws:iot:{}:{}:{}/{name}", account.region, account.id, self.arn_word())
    }

    fn from_arn_word(word: &str) -> Option<Self> {
        [
            Self::Thing,
            Self::ThingType,
            Self::ThingGroup,
            Self::BillingGroup,
            Self::Certificate,
            Self::CaCertificate,
            Self::Policy,
            Self::RoleAlias,
            Self::TopicRule,
            Self::Client,
            Self::Topic,
            Self::TopicFilter,
        ]
        .into_iter()
        .find(|kind| kind.arn_word() == word)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arn {
    pub kind: ResourceKind,
    pub name: String,
}

impl Arn {
    pub fn new(kind: ResourceKind, name: impl Into<String>) -> Self {
        Self { kind, name: name.into() }
    }

    pub fn render(&self, account: &Account) -> String {
        self.kind.arn(&self.name, account)
    }

    /// Parses an ARN of this account and region. Anything else is a resource
    /// that cannot exist here.
    pub fn parse(arn: &str, account: &Account) -> Result<Self> {
        let not_found = || Error::not_found(format!("The resource {arn} does not exist."));
        let mut parts = arn.splitn(6, ':');
        let (Some("arn"), Some(_partition), Some("iot"), Some(region), Some(account_id), Some(resource)) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Error::invalid(format!("Invalid resource ARN: {arn}")));
        };
        if region != account.region || account_id != account.id {
            return Err(not_found());
        }
        let (word, name) = resource.split_once('/').ok_or_else(not_found)?;
        let kind = ResourceKind::from_arn_word(word).ok_or_else(not_found)?;
        Ok(Self::new(kind, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let account = Account::default();
        let arn = Arn::new(ResourceKind::ThingGroup, "g:1");
        let text = arn.render(&account);
        assert_eq!(text, "arn:aws:iot:us-east-1:000000000000:thinggroup/g:1");
        assert_eq!(Arn::parse(&text, &account).unwrap(), arn);
    }

    #[test]
    fn foreign_or_malformed() {
        let account = Account::default();
        assert!(matches!(
            Arn::parse("arn:aws:iot:eu-west-1:000000000000:thing/x", &account),
            Err(Error::ResourceNotFound(_))
        ));
        assert!(matches!(Arn::parse("nonsense", &account), Err(Error::InvalidRequest(_))));
    }
}
