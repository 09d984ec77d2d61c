//! A share of requests, as Envoy's `FractionalPercent` gives it.

/// A share of requests: `numerator` out of `denominator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fraction {
    pub numerator: u32,
    pub denominator: u32,
}

impl Fraction {
    pub const ALL: Fraction = Fraction {
        numerator: 100,
        denominator: 100,
    };

    /// Whether this request falls in the share.
    pub fn roll(self) -> bool {
        if self.numerator >= self.denominator {
            return true;
        }
        self.numerator > 0 && rand::random_range(0..self.denominator) < self.numerator
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_roll_in_proportion() {
        assert!(Fraction::ALL.roll());
        let none = Fraction {
            numerator: 0,
            denominator: 1_000_000,
        };
        assert!((0..1000).all(|_| !none.roll()));
        let tenth = Fraction {
            numerator: 100_000,
            denominator: 1_000_000,
        };
        let hits = (0..20_000).filter(|_| tenth.roll()).count();
        assert!((1_600..2_400).contains(&hits), "{hits} of 20000");
    }
}
