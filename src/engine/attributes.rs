//! Typed values an application attaches to a session.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;

use parking_lot::Mutex;

type Values = HashMap<TypeId, Box<dyn Any + Send + Sync>>;

/// The values an application keeps on a session, one per type (as `http::Extensions` keeps
/// a request's): the identity a security policy checked at handshake, a chat member's name,
/// anything listeners need again later. Reached with
/// [`ServerSession::attributes`](super::ServerSession::attributes); dropped with the session.
///
/// (CometD calls these session attributes; the session's *extensions* are something else: the
/// [`SessionExtension`](crate::SessionExtension)s that see its messages.)
///
/// ```
/// # fn example(session: &tower_bayeux::ServerSession) {
/// #[derive(Clone)]
/// struct Member {
///     name: String,
/// }
///
/// session.attributes().insert(Member { name: "ada".into() });
/// let name = session.attributes().get::<Member>().map(|member| member.name);
/// session.attributes().with(|member: Option<&mut Member>| {
///     if let Some(member) = member {
///         member.name.push_str(" (away)");
///     }
/// });
/// # let _ = name;
/// # }
/// ```
#[derive(Default)]
pub struct SessionAttributes {
    // Boxed and created on first use: most sessions carry none.
    values: Mutex<Option<Box<Values>>>,
}

impl fmt::Debug for SessionAttributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.values.lock().as_ref().map_or(0, |values| values.len());
        f.debug_struct("SessionAttributes")
            .field("values", &count)
            .finish()
    }
}

impl SessionAttributes {
    /// Stores `value`, replacing the value of the same type and returning it.
    pub fn insert<T: Send + Sync + 'static>(&self, value: T) -> Option<T> {
        self.values
            .lock()
            .get_or_insert_with(Box::default)
            .insert(TypeId::of::<T>(), Box::new(value))
            .and_then(|previous| previous.downcast().ok().map(|boxed| *boxed))
    }

    /// A clone of the value of type `T`.
    pub fn get<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        self.with(|value: Option<&mut T>| value.cloned())
    }

    /// Whether a value of type `T` is stored.
    pub fn contains<T: Send + Sync + 'static>(&self) -> bool {
        self.values
            .lock()
            .as_ref()
            .is_some_and(|values| values.contains_key(&TypeId::of::<T>()))
    }

    /// Calls `f` with the value of type `T`, to read it without a clone or change it in place.
    /// The session's attributes are locked meanwhile: keep `f` short and do not reach them
    /// again from inside it.
    pub fn with<T: Send + Sync + 'static, R>(&self, f: impl FnOnce(Option<&mut T>) -> R) -> R {
        let mut values = self.values.lock();
        let value = values
            .as_mut()
            .and_then(|values| values.get_mut(&TypeId::of::<T>()))
            .and_then(|value| value.downcast_mut::<T>());
        f(value)
    }

    /// Removes the value of type `T` and returns it.
    pub fn remove<T: Send + Sync + 'static>(&self) -> Option<T> {
        self.values
            .lock()
            .as_mut()
            .and_then(|values| values.remove(&TypeId::of::<T>()))
            .and_then(|value| value.downcast().ok().map(|boxed| *boxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_value_per_type() {
        let attributes = SessionAttributes::default();
        assert_eq!(attributes.get::<String>(), None);
        assert!(!attributes.contains::<String>());
        assert_eq!(attributes.insert("first".to_owned()), None);
        assert_eq!(attributes.insert(7u32), None);
        assert_eq!(
            attributes.insert("second".to_owned()),
            Some("first".to_owned())
        );
        assert_eq!(attributes.get::<String>().as_deref(), Some("second"));
        attributes.with(|n: Option<&mut u32>| *n.unwrap() += 1);
        assert_eq!(attributes.get::<u32>(), Some(8));
        assert_eq!(attributes.remove::<u32>(), Some(8));
        assert!(!attributes.contains::<u32>());
        assert!(attributes.contains::<String>());
    }
}
