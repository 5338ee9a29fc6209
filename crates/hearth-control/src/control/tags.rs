//! Tags on images and microVMs, by ARN.

use hearth_api::model::*;
use hearth_api::ApiError;

use super::{internal, Inner};

impl Inner {
    /// `TagResource`.
    pub(super) fn tag(&self, input: TagResourceRequest) -> Result<(), ApiError> {
        self.check_taggable(&input.resource)?;
        self.store
            .put_tags(&input.resource, &input.tags)
            .map_err(internal)
    }

    /// `UntagResource`.
    pub(super) fn untag(&self, input: UntagResourceRequest) -> Result<(), ApiError> {
        self.check_taggable(&input.resource)?;
        self.store
            .remove_tags(&input.resource, Some(&input.tag_keys))
            .map_err(internal)
    }

    /// `ListTags`.
    pub(super) fn list_tags(&self, input: ListTagsRequest) -> Result<ListTagsResponse, ApiError> {
        self.check_taggable(&input.resource)?;
        let tags = self.store.tags(&input.resource).map_err(internal)?;
        Ok(ListTagsResponse { tags: Some(tags) })
    }

    /// A resource ARN must name a live image or a microVM of this account.
    fn check_taggable(&self, arn: &str) -> Result<(), ApiError> {
        let not_found = || ApiError::not_found("resource", arn);
        if !arn.starts_with("arn:") {
            return Err(not_found());
        }
        if let Some(name) = self.arns.image_name(arn) {
            let image = self.store.live_image(name).map_err(internal)?;
            return image
                .filter(|i| i.arn == arn)
                .map(drop)
                .ok_or_else(not_found);
        }
        if let Some(id) = self.arns.microvm_id(arn) {
            let microvm = self.store.microvm(&id).map_err(internal)?;
            return microvm.map(drop).ok_or_else(not_found);
        }
        Err(not_found())
    }
}
