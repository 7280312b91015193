//! Delete: manifests, tags, blob links and whole repositories.

use std::collections::BTreeMap;

use super::{details, Caller, Registry};
use crate::audit::EventType;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::names::{Reference, RepoName};
use crate::ports::ManifestDelete;
use crate::principal::Action;

impl Registry {
    /// By digest, deletes the manifest and every tag on it; by tag, deletes
    /// only the tag. Either is refused (`Error::TagRefused`) if a rule
    /// denies the caller `registry:tag_delete` on a tag it would delete.
    pub async fn delete_manifest(
        &self,
        caller: &Caller,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<()> {
        self.delete_planned(caller, repo, reference, None).await
    }

    /// [`Registry::delete_manifest`], or with `planned` (the digest a
    /// plan saw the reference at) only what is unchanged since: a tag
    /// while it still points at that digest, a manifest while nothing
    /// refers to it (`ManifestDelete::IfUnreferenced`), both decided in
    /// the store's step; else `Error::Conflict` and nothing deleted.
    /// Retention deletes through this.
    pub(crate) async fn delete_planned(
        &self,
        caller: &Caller,
        repo: &RepoName,
        reference: &Reference,
        planned: Option<&Digest>,
    ) -> Result<()> {
        self.authorize(caller, Action::Delete, Some(repo)).await?;
        let guard = self.tag_guard(caller, Action::TagDelete, repo);
        if let Reference::Tag(t) = reference {
            // A tag's decision is its name's, known before the store step,
            // and deleting it moves nothing else: no race to close here.
            self.audit_tag_refusal(caller, repo, guard.check(t, None))
                .await?;
        }
        let (event_type, digest) = match reference {
            Reference::Digest(d) => (EventType::ManifestDeleted, Some(d)),
            Reference::Tag(_) => (EventType::TagDeleted, None),
        };
        // Recorded by the delete's own step: a delete that is not audited
        // did not happen (and is not told 500 after it did).
        let event = self.event(
            caller,
            event_type,
            Some(repo),
            digest,
            details([("reference", reference.to_string())]),
        );
        let change = self.manifests.change(repo);
        let deleted = match reference {
            Reference::Digest(d) => {
                let mode = match planned {
                    Some(_) => ManifestDelete::IfUnreferenced,
                    None => ManifestDelete::WithTags,
                };
                self.meta
                    .delete_manifest(repo, d, &guard, mode, &event)
                    .await
            }
            Reference::Tag(t) => self.meta.delete_tag(repo, t, planned, &event).await,
        };
        change.done();
        let deleted = self.audit_tag_refusal(caller, repo, deleted).await?;
        if !deleted {
            return Err(self.manifest_missing(repo, reference).await?);
        }
        Ok(())
    }

    /// Removes the blob from the repository; its bytes stay until GC finds
    /// nothing referencing them.
    pub async fn delete_blob(
        &self,
        caller: &Caller,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<()> {
        self.authorize(caller, Action::Delete, Some(repo)).await?;
        let event = self.event(
            caller,
            EventType::BlobDeleted,
            Some(repo),
            Some(digest),
            BTreeMap::new(),
        );
        let change = self.blob_links.change(repo);
        let unlinked = self.meta.unlink_blob(repo, digest, &event).await;
        change.done();
        if !unlinked? {
            return Err(Error::BlobUnknown(digest.clone()));
        }
        Ok(())
    }

    /// Deletes a repository with all its manifests, tags, links and upload
    /// sessions (admin only). Blobs are left for GC. In a mirror this is
    /// [`Registry::drop_proxy_cache`]: one operation, however it is asked
    /// for, which lets a fill in progress finish and is audited as
    /// `proxy_cache_dropped`.
    pub async fn delete_repository(&self, caller: &Caller, repo: &RepoName) -> Result<()> {
        // The policy alone: in a mirror this drops the repository's cache
        // (the next pull fetches again), which admins may do.
        self.check_policy(caller, Action::Delete, Some(repo))
            .await?;
        if self.mirrors.find(repo).is_some() {
            return self.drop_proxy_cache(caller, repo).await;
        }
        self.authorize_admin(caller).await?;
        // Its tags go with it: an admin is bound by tag rules too.
        let guard = self.tag_guard(caller, Action::TagDelete, repo);
        let event = self.event(
            caller,
            EventType::RepoDeleted,
            Some(repo),
            None,
            BTreeMap::new(),
        );
        let change = self.manifests.change(repo);
        let links = self.blob_links.change(repo);
        let deleted = self.meta.delete_repository(repo, &guard, &event).await;
        change.done();
        links.done();
        let uploads = self
            .audit_tag_refusal(caller, repo, deleted)
            .await?
            .ok_or_else(|| Error::NameUnknown(repo.clone()))?;
        for id in &uploads {
            self.blobs.cancel_upload(id).await?;
        }
        Ok(())
    }
}
