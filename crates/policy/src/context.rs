//! The request context: the values of policy variables and condition keys.

use std::collections::BTreeMap;

/// Facts about the thing a connection is associated with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThingFacts {
    pub name: String,
    pub type_name: Option<String>,
    pub attributes: BTreeMap<String, String>,
}

/// Facts read from the client certificate. Distinguished-name attributes use
/// AWS's variable names (`CommonName`, `Organization`, ...), in certificate order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertificateFacts {
    pub subject: Vec<(String, String)>,
    pub issuer: Vec<(String, String)>,
    /// (`DNSName` | `RFC822Name` | `UniformResourceIdentifier` | `IPAddress` | `DirectoryName`, value)
    pub subject_alternative_names: Vec<(String, String)>,
    pub issuer_alternative_names: Vec<(String, String)>,
    pub serial_number: String,
}

/// Values longer than this are never substituted (AWS's rule).
const MAX_SUBSTITUTION_CHARS: usize = 1024;
/// Multi-valued variables keep at most this many values.
const MAX_VALUES: usize = 5;

/// Keys and their values, sorted by key: a connection's context holds a handful of
/// keys (those its policies read), for which a sorted list is smaller than a tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    values: Vec<(String, Vec<String>)>,
}

impl Context {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a context key (e.g. `iot:ClientId`) to one or more values.
    pub fn insert(&mut self, key: impl Into<String>, values: Vec<String>) {
        let mut values = values;
        values.truncate(MAX_VALUES);
        self.put(key.into(), values);
    }

    fn put(&mut self, key: String, values: Vec<String>) {
        match self.values.binary_search_by(|(k, _)| k.as_str().cmp(&key)) {
            Ok(at) => self.values[at].1 = values,
            Err(at) => self.values.insert(at, (key, values)),
        }
    }

    fn get(&self, key: &str) -> Option<&Vec<String>> {
        self.values.binary_search_by(|(k, _)| k.as_str().cmp(key)).ok().map(|at| &self.values[at].1)
    }

    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.insert(key, vec![value.into()]);
        self
    }

    /// The context of an MQTT connection. `thing` is the thing whose variables
    /// resolve: the attached thing chosen by AWS's attachment rules, if any.
    pub fn for_connection(client_id: &str, thing: Option<&ThingFacts>, certificate: Option<&CertificateFacts>) -> Self {
        let mut context = Self::new().with("iot:ClientId", client_id);
        context = context.with("iot:Connection.Thing.IsAttached", if thing.is_some() { "true" } else { "false" });
        if let Some(thing) = thing {
            context = context.with("iot:Connection.Thing.ThingName", &thing.name);
            if let Some(type_name) = &thing.type_name {
                context = context.with("iot:Connection.Thing.ThingTypeName", type_name);
            }
            for (name, value) in &thing.attributes {
                context = context.with(format!("iot:Connection.Thing.Attributes[{name}]"), value);
            }
        }
        if let Some(certificate) = certificate {
            context.add_certificate(certificate);
        }
        context
    }

    fn add_certificate(&mut self, certificate: &CertificateFacts) {
        let mut available = Vec::new();
        let groups = [
            ("iot:Certificate.Subject.", &certificate.subject),
            ("iot:Certificate.Issuer.", &certificate.issuer),
            ("iot:Certificate.Subject.AlternativeName.", &certificate.subject_alternative_names),
            ("iot:Certificate.Issuer.AlternativeName.", &certificate.issuer_alternative_names),
        ];
        for (prefix, entries) in groups {
            let mut grouped: BTreeMap<&str, Vec<String>> = BTreeMap::new();
            for (name, value) in entries {
                grouped.entry(name).or_default().push(value.clone());
            }
            for (name, values) in grouped {
                let key = format!("{prefix}{name}");
                available.push(key.trim_start_matches("iot:Certificate.").to_string());
                self.insert(key, values);
            }
        }
        if !certificate.serial_number.is_empty() {
            available.push("SerialNumber".into());
            self.insert("iot:Certificate.SerialNumber", vec![certificate.serial_number.clone()]);
        }
        // Every available key is listed, however many.
        self.put("iot:Certificate.AvailableKeys".into(), available);
    }

    /// Keeps only the keys that `names` read (a name reads its key, and `<key>.List`
    /// or `<key>.N` read `<key>`), so a connection holds what its policies use.
    pub fn retain_names(&mut self, names: &std::collections::BTreeSet<&str>) {
        self.values.retain(|(key, _)| {
            names.iter().any(|name| {
                name.strip_prefix(key.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
            })
        });
        self.values.shrink_to_fit();
    }

    /// The values of a condition key; `<key>.List` names all values of `<key>`.
    pub(crate) fn values(&self, key: &str) -> Option<&[String]> {
        if let Some(values) = self.get(key) {
            return Some(values);
        }
        let base = key.strip_suffix(".List")?;
        self.get(base).map(Vec::as_slice)
    }

    /// The single value a `${name}` variable stands for, or `None` when AWS would
    /// not substitute it: unknown, out of range, or a value with wildcard characters.
    pub(crate) fn substitution(&self, name: &str) -> Option<&str> {
        let value = match self.get(name) {
            Some(values) => values.first()?,
            None => {
                // `<key>.N` is the (N+1)-th value of a multi-valued key.
                let (base, index) = name.rsplit_once('.')?;
                let index: usize = index.parse().ok()?;
                self.get(base)?.get(index)?
            }
        };
        let clean = value.chars().count() <= MAX_SUBSTITUTION_CHARS && !value.contains(['*', '$', '+', '?', '#']);
        clean.then_some(value.as_str())
    }
}
