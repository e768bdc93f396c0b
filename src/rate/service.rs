//! The three services a record can be: voice, SMS and data.

/// A service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    Voice = 0,
    Sms = 1,
    Data = 2,
}

impl Service {
    pub const ALL: [Service; 3] = [Service::Voice, Service::Sms, Service::Data];

    #[inline]
    pub fn from_bytes(b: &[u8]) -> Option<Service> {
        match b {
            b"voice" => Some(Service::Voice),
            b"sms" => Some(Service::Sms),
            b"data" => Some(Service::Data),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Service::Voice => "voice",
            Service::Sms => "sms",
            Service::Data => "data",
        }
    }

    /// Unit of usage for this service, as printed on invoices.
    pub fn unit(self) -> &'static str {
        match self {
            Service::Voice => "seconds",
            Service::Sms => "messages",
            Service::Data => "bytes",
        }
    }

    pub fn from_index(i: u8) -> Option<Service> {
        Service::ALL.get(i as usize).copied()
    }
}
