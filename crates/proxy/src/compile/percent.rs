//! Envoy's `FractionalPercent` → a [`Fraction`] of requests.

use envoy_types::pb::envoy::r#type::v3::{FractionalPercent, fractional_percent};

use super::Reason;
use crate::routing::Fraction;

/// A share as Envoy reads it: unset means none of the requests.
pub(super) fn fraction(
    percent: Option<&FractionalPercent>,
    field: &str,
) -> Result<Fraction, Reason> {
    let Some(percent) = percent else {
        return Ok(Fraction {
            numerator: 0,
            denominator: 100,
        });
    };
    let denominator = match fractional_percent::DenominatorType::try_from(percent.denominator) {
        Ok(fractional_percent::DenominatorType::Hundred) => 100,
        Ok(fractional_percent::DenominatorType::TenThousand) => 10_000,
        Ok(fractional_percent::DenominatorType::Million) => 1_000_000,
        Err(_) => {
            return Err(format!(
                "{field}.denominator {} is unknown",
                percent.denominator
            ));
        }
    };
    Ok(Fraction {
        numerator: percent.numerator.min(denominator),
        denominator,
    })
}
