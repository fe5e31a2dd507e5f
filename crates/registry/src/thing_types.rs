use ferrocore_model::registry::{
    Tags, ThingType, check_type_deletable, validate_description, validate_name, validate_searchable_attributes,
    validate_tags,
};
use ferrocore_model::{Error, ResourceKind, Result};
use ferrocore_store::{Collection, Expect, Write};

use crate::paging::{Page, PageRequest};
use crate::thing_index::ThingsBy;
use crate::{Outcome, Registry, new_id, put};

#[derive(Debug, Clone, Default)]
pub struct CreateThingType {
    pub name: String,
    pub description: Option<String>,
    pub searchable_attributes: Vec<String>,
    pub tags: Tags,
}

#[derive(Debug, Clone)]
pub struct ThingTypeCreated {
    pub name: String,
    pub arn: String,
    pub id: String,
}

fn type_not_found(name: &str) -> Error {
    Error::not_found(format!("Thing Type {name} does not exist"))
}

impl Registry {
    async fn require_thing_type(&self, name: &str) -> Result<crate::Loaded<ThingType>> {
        validate_name("thingTypeName", name)?;
        self.load(Collection::ThingType, name).await?.ok_or_else(|| type_not_found(name))
    }

    pub async fn create_thing_type(&self, request: CreateThingType) -> Result<ThingTypeCreated> {
        validate_name("thingTypeName", &request.name)?;
        validate_description("thingTypeProperties.thingTypeDescription", request.description.as_deref())?;
        validate_searchable_attributes(&request.searchable_attributes)?;
        validate_tags(&request.tags)?;
        let arn = self.arn(ResourceKind::ThingType, &request.name);
        let (arn, request) = (&arn, &request);
        self.transact(|| async move {
            if let Some(existing) = self.load::<ThingType>(Collection::ThingType, &request.name).await? {
                let existing = existing.value;
                if existing.description != request.description
                    || existing.searchable_attributes != request.searchable_attributes
                {
                    return Err(Error::ResourceAlreadyExists {
                        message: format!("Thing Type {} already exists with different properties", request.name),
                        resource_id: existing.id,
                        resource_arn: arn.clone(),
                    });
                }
                return Ok(Outcome::answer(ThingTypeCreated {
                    name: existing.name,
                    arn: arn.clone(),
                    id: existing.id,
                }));
            }
            let thing_type = ThingType {
                name: request.name.clone(),
                id: new_id(),
                description: request.description.clone(),
                searchable_attributes: request.searchable_attributes.clone(),
                deprecated: false,
                deprecation_date: None,
                creation_date: self.now(),
                tags: request.tags.clone(),
            };
            let created =
                ThingTypeCreated { name: thing_type.name.clone(), arn: arn.clone(), id: thing_type.id.clone() };
            Ok(Outcome::write(vec![put(Collection::ThingType, &thing_type.name, Expect::Absent, &thing_type)], created))
        })
        .await
    }

    pub async fn describe_thing_type(&self, name: &str) -> Result<ThingType> {
        Ok(self.require_thing_type(name).await?.value)
    }

    /// UpdateThingType: replaces the description and searchable attributes given.
    pub async fn update_thing_type(
        &self,
        name: &str,
        description: Option<String>,
        searchable_attributes: Option<Vec<String>>,
    ) -> Result<()> {
        validate_description("thingTypeProperties.thingTypeDescription", description.as_deref())?;
        if let Some(names) = &searchable_attributes {
            validate_searchable_attributes(names)?;
        }
        let (description, searchable_attributes) = (&description, &searchable_attributes);
        self.transact(|| async move {
            let loaded = self.require_thing_type(name).await?;
            let mut thing_type = loaded.value.clone();
            if description.is_some() {
                thing_type.description = description.clone();
            }
            if let Some(names) = &searchable_attributes {
                thing_type.searchable_attributes = names.clone();
            }
            Ok(Outcome::write(vec![put(Collection::ThingType, name, loaded.expect(), &thing_type)], ()))
        })
        .await
    }

    pub async fn deprecate_thing_type(&self, name: &str, undo: bool) -> Result<()> {
        self.transact(|| async move {
            let loaded = self.require_thing_type(name).await?;
            let mut thing_type = loaded.value.clone();
            if thing_type.deprecated != undo {
                return Ok(Outcome::answer(()));
            }
            thing_type.deprecated = !undo;
            thing_type.deprecation_date = (!undo).then(|| self.now());
            Ok(Outcome::write(vec![put(Collection::ThingType, name, loaded.expect(), &thing_type)], ()))
        })
        .await
    }

    pub async fn delete_thing_type(&self, name: &str) -> Result<()> {
        validate_name("thingTypeName", name)?;
        self.transact(|| async move {
            let Some(loaded) = self.load::<ThingType>(Collection::ThingType, name).await? else {
                return Err(type_not_found(name));
            };
            check_type_deletable(&loaded.value, self.now(), self.config.thing_type_delete_wait_ms)?;
            if let Some(user) = self.any_thing_in(ThingsBy::Type(name)).await? {
                return Err(Error::invalid(format!(
                    "Can not delete thing type {name} because it is associated with thing {user} (and possibly others). Remove the thing type from its things first."
                )));
            }
            // CreateThing and UpdateThing refuse deprecated types and hold the type they
            // use: the delete waits for them, then finds their things.
            let writes = vec![
                Write::delete(Collection::ThingType, name, loaded.expect()),
                Write::none_with_prefix(Collection::ThingIndex, ThingsBy::Type(name).prefix()),
            ];
            Ok(Outcome::write(writes, ()))
        })
        .await
    }

    pub async fn list_thing_types(&self, name_filter: Option<&str>, page: &PageRequest) -> Result<Page<ThingType>> {
        self.page_where(Collection::ThingType, page, |t: &ThingType| name_filter.is_none_or(|n| t.name == n)).await
    }
}
